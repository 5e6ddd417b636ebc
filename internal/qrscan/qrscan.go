// Package qrscan reads back QR codes kube2fa prints on a terminal, as a phone's camera would: tests use it
// to prove that what the kubectl plugin shows can be scanned into the key it stands for.
package qrscan

import (
	"errors"
	"image"
	"image/color"
	"strings"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// scale is how many pixels a module gets in the image the decoder reads.
const scale = 4

// Terminal finds the QR code in text (lines of full, upper-half, lower-half blocks and spaces, as
// otp.QRText prints it, possibly among other lines) and returns what it encodes.
func Terminal(text string) (string, error) {
	var rows []string
	for _, line := range strings.Split(text, "\n") {
		if line != "" && strings.Trim(line, "█▀▄ ") == "" && strings.ContainsRune(line, '█') {
			rows = append(rows, line)
		}
	}
	if len(rows) == 0 {
		return "", errors.New("qrscan: no QR code in the text")
	}
	width := len([]rune(rows[0]))
	img := image.NewGray(image.Rect(0, 0, width*scale, len(rows)*2*scale))
	for y, row := range rows {
		for x, r := range []rune(row) {
			top := r == '█' || r == '▀'
			bottom := r == '█' || r == '▄'
			paint(img, x, 2*y, top)
			paint(img, x, 2*y+1, bottom)
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	// The image is a pure code, square to the pixel: read it as one, rather than hunt for finder patterns
	// (which misjudges the dimension of some codes at this scale).
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// paint draws module (x, y) light or dark.
func paint(img *image.Gray, x, y int, light bool) {
	c := color.Gray{}
	if light {
		c.Y = 255
	}
	for dy := range scale {
		for dx := range scale {
			img.SetGray(x*scale+dx, y*scale+dy, c)
		}
	}
}
