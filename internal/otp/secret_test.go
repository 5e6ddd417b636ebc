package otp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestGenerateSecretHonoursSize(t *testing.T) {
	for _, size := range []int{MinSecretBytes, 20, 32, 64} {
		secret, err := GenerateSecret(size, nil)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(secret) != size {
			t.Errorf("size %d: got %d bytes", size, len(secret))
		}
	}
}

func TestGenerateSecretDiffersBetweenCalls(t *testing.T) {
	a, errA := GenerateSecret(20, nil)
	b, errB := GenerateSecret(20, nil)
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two secrets are equal")
	}
}

func TestGenerateSecretReadsTheGivenReader(t *testing.T) {
	want := bytes.Repeat([]byte{0xab}, 20)
	got, err := GenerateSecret(20, bytes.NewReader(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("got %x, %v; want %x", got, err, want)
	}
}

func TestGenerateSecretRefusesSmallSizes(t *testing.T) {
	for _, size := range []int{-1, 0, 10, MinSecretBytes - 1} {
		if _, err := GenerateSecret(size, nil); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
}

func TestGenerateSecretPropagatesReaderErrors(t *testing.T) {
	boom := errors.New("entropy exhausted")
	for _, tt := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"failing reader", iotest.ErrReader(boom), boom},
		{"short reader", bytes.NewReader(make([]byte, 10)), io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := GenerateSecret(20, tt.r); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeSecretMatchesRFCBase32(t *testing.T) {
	if got, want := EncodeSecret(seed20), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := EncodeSecret(make([]byte, 16)); strings.Contains(got, "=") {
		t.Errorf("padding in %s", got)
	}
}

func TestDecodeSecret(t *testing.T) {
	sixteen := []byte("0123456789abcdef")
	tests := []struct {
		name  string
		input string
		want  []byte
	}{
		{"canonical", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", seed20},
		{"lower case", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq", seed20},
		{"groups of four", "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ", seed20},
		{"unpadded 16 bytes", EncodeSecret(sixteen), sixteen},
		{"padded 16 bytes", EncodeSecret(sixteen) + "======", sixteen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeSecret(tt.input)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("got %x, %v; want %x", got, err, tt.want)
			}
		})
	}
}

func TestDecodeSecretRejectsInvalidInput(t *testing.T) {
	for _, input := range []string{"", "====", "   ", "GEZDGNBVGY3TQOJ1", "GEZDGNBVGY3TQOJQ!", "A"} {
		if got, err := DecodeSecret(input); err == nil {
			t.Errorf("%q: got %x, want an error", input, got)
		}
	}
}

func TestSecretRoundTrip(t *testing.T) {
	secret, err := GenerateSecret(37, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSecret(EncodeSecret(secret))
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("round trip changed the secret: %v", err)
	}
}
