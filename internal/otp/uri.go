package otp

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strconv"
	"strings"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
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

// QRPNG renders uri as a black-and-white PNG QR code of size x size pixels. Errors never contain the URI.
func QRPNG(uri string, size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("otp: QR code size must be positive, got %d", size)
	}
	key, err := potp.NewKeyFromURL(uri)
	if err != nil {
		return nil, errors.New("otp: invalid provisioning URI") // url.Parse errors quote the URI
	}
	img, err := key.Image(size, size)
	if err != nil {
		// The QR encoder's errors may quote the URI; only the scaling error is known to be safe.
		if strings.HasPrefix(err.Error(), "can not scale barcode") {
			return nil, fmt.Errorf("otp: QR code does not fit in %dx%d pixels", size, size)
		}
		return nil, errors.New("otp: encoding QR code failed")
	}
	bw := image.NewPaletted(img.Bounds(), color.Palette{color.Black, color.White})
	draw.Draw(bw, bw.Rect, img, img.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, bw); err != nil {
		return nil, fmt.Errorf("otp: encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}
