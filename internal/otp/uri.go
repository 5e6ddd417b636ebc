package otp

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
	potp "github.com/pquerna/otp"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// ProvisioningURI returns the otpauth:// URI (Key Uri Format) of secret, labelled "issuer:account".
// For HOTP it carries counter, the first counter the authenticator will use; for TOTP counter is ignored.
// Every query value is escaped, so that no issuer can end the issuer parameter or add one ("Smith & Co",
// "Acme&secret=..."), and the label is escaped as a path, so that no account reaches the query. Spaces are
// %20, not "+", which some authenticator apps show literally. Errors never contain the secret.
func ProvisioningURI(p Params, issuer, account string, secret []byte, counter int64) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	switch {
	case issuer == "":
		return "", errors.New("otp: issuer must be set")
	case strings.Contains(issuer, ":"):
		return "", errors.New("otp: issuer must not contain ':'")
	case account == "":
		return "", errors.New("otp: account name must be set")
	case len(secret) < MinSecretBytes:
		return "", errShortSecret
	}
	q := url.Values{
		"secret":    {EncodeSecret(secret)},
		"issuer":    {issuer},
		"algorithm": {string(p.Algorithm)},
		"digits":    {strconv.Itoa(int(p.Digits))},
	}
	if p.Method == v1alpha1.MethodTOTP {
		q.Set("period", strconv.Itoa(int(p.PeriodSeconds)))
	} else {
		if counter < 0 {
			return "", fmt.Errorf("otp: HOTP counter must not be negative, got %d", counter)
		}
		q.Set("counter", strconv.FormatInt(counter, 10)) // required for HOTP by the Key Uri Format
	}
	u := url.URL{
		Scheme: "otpauth",
		Host:   strings.ToLower(string(p.Method)),
		Path:   "/" + issuer + ":" + account,
		// QueryEscape writes a space as "+" and a "+" as "%2B": every "+" left is a space.
		RawQuery: strings.ReplaceAll(q.Encode(), "+", "%20"),
	}
	return u.String(), nil
}

// ErrTooLongForQR: the URI does not fit in a QR code (at error correction M, about 2,300 bytes: a very
// long account name, percent-encoded).
var ErrTooLongForQR = errors.New("otp: the provisioning URI is too long for a QR code")

// QRPNG renders uri as a black-and-white PNG QR code of size x size pixels, as pquerna/otp's Key.Image
// does (error correction M, the code scaled by the largest whole factor that fits, centred), but drawn
// straight into a two-colour image and encoded with pooled PNG buffers: a manager provisions thousands of
// keys in a burst, and most of each one's cost was scaling pixel by pixel and a new compressor per image.
// Errors never contain the URI.
func QRPNG(uri string, size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("otp: QR code size must be positive, got %d", size)
	}
	if _, err := potp.NewKeyFromURL(uri); err != nil {
		return nil, errors.New("otp: invalid provisioning URI") // url.Parse errors quote the URI
	}
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil { // too long is its only failure for a valid URI; its errors may quote the URI
		return nil, ErrTooLongForQR
	}
	img, err := scaled(code, size)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("otp: encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// QRText renders the QR code of a provisioning URI for a terminal, two modules a character high, with a
// quiet zone of four modules: light modules are full blocks, dark ones spaces, so that on a terminal's dark
// background the code shows dark on light, as a phone expects. Errors never contain the URI.
func QRText(uri string) (string, error) {
	if _, err := potp.NewKeyFromURL(uri); err != nil {
		return "", errors.New("otp: invalid provisioning URI")
	}
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		return "", ErrTooLongForQR
	}
	const quiet = 4
	dim := code.Bounds().Dx()
	light := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= dim || y >= dim {
			return true
		}
		r, _, _, _ := code.At(x, y).RGBA()
		return r != 0
	}
	var b strings.Builder
	for y := 0; y < dim+2*quiet; y += 2 {
		for x := range dim + 2*quiet {
			switch top, bottom := light(x, y), light(x, y+1); {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteRune(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// scaled draws code onto a white size x size image, each module a factor x factor square, the whole
// centred, as barcode.Scale does.
func scaled(code barcode.Barcode, size int) (*image.Paletted, error) {
	dim := code.Bounds().Dx() // QR codes are square
	factor := size / dim
	if factor == 0 {
		return nil, fmt.Errorf("otp: QR code does not fit in %dx%d pixels", size, size)
	}
	offset := (size - dim*factor) / 2
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.Black, color.White})
	white := uint8(img.Palette.Index(color.White))
	for i := range img.Pix {
		img.Pix[i] = white
	}
	for y := range dim {
		top := (offset + y*factor) * img.Stride
		row := img.Pix[top : top+img.Stride]
		for x := range dim {
			if c := uint8(img.Palette.Index(code.At(x, y))); c != white {
				for i := offset + x*factor; i < offset+(x+1)*factor; i++ {
					row[i] = c
				}
			}
		}
		for r := 1; r < factor; r++ {
			copy(img.Pix[top+r*img.Stride:], row)
		}
	}
	return img, nil
}

// pngEncoder reuses its buffers and compressor across images.
var pngEncoder = png.Encoder{BufferPool: &pngBuffers{}}

type pngBuffers struct{ pool sync.Pool }

func (p *pngBuffers) Get() *png.EncoderBuffer {
	b, _ := p.pool.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngBuffers) Put(b *png.EncoderBuffer) { p.pool.Put(b) }
