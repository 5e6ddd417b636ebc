package otp

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"strings"
	"sync"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

var pquernaAlgorithms = map[v1alpha1.Algorithm]potp.Algorithm{
	v1alpha1.AlgorithmSHA1:   potp.AlgorithmSHA1,
	v1alpha1.AlgorithmSHA256: potp.AlgorithmSHA256,
	v1alpha1.AlgorithmSHA512: potp.AlgorithmSHA512,
}

// ProvisioningURI returns the otpauth:// URI (Key Uri Format) of secret, labelled "issuer:account".
// For HOTP it carries counter, the first counter the authenticator will use; for TOTP counter is ignored.
// Errors never contain the secret.
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
		// Also guards pquerna, which generates a key of its own when given none.
		return "", errShortSecret
	}
	alg := pquernaAlgorithms[p.Algorithm]
	var (
		key *potp.Key
		err error
	)
	if p.Method == v1alpha1.MethodTOTP {
		key, err = totp.Generate(totp.GenerateOpts{
			Issuer: issuer, AccountName: account, Secret: secret,
			Digits: potp.Digits(p.Digits), Algorithm: alg, Period: uint(p.PeriodSeconds),
		})
	} else {
		if counter < 0 {
			return "", fmt.Errorf("otp: HOTP counter must not be negative, got %d", counter)
		}
		key, err = hotp.Generate(hotp.GenerateOpts{
			Issuer: issuer, AccountName: account, Secret: secret,
			Digits: potp.Digits(p.Digits), Algorithm: alg,
		})
	}
	if err != nil {
		// pquerna's errors may quote the URI, and with it the secret: never wrap them.
		return "", errors.New("otp: building provisioning URI failed")
	}
	uri := key.String()
	if p.Method == v1alpha1.MethodHOTP {
		// The Key Uri Format requires counter for HOTP; pquerna omits it. The query is never empty.
		uri += "&counter=" + strconv.FormatInt(counter, 10)
	}
	return uri, nil
}

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
	if err != nil {
		return nil, errors.New("otp: encoding QR code failed") // the QR encoder's errors may quote the URI
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
