package otp

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// GenerateSecret returns size random bytes read from r, or from crypto/rand.Reader when r is nil.
// It refuses sizes below MinSecretBytes.
func GenerateSecret(size int, r io.Reader) ([]byte, error) {
	if size < MinSecretBytes {
		return nil, fmt.Errorf("otp: secret size must be at least %d bytes, got %d", MinSecretBytes, size)
	}
	if r == nil {
		r = rand.Reader
	}
	secret := make([]byte, size)
	if _, err := io.ReadFull(r, secret); err != nil {
		clear(secret)
		return nil, fmt.Errorf("otp: reading random bytes: %w", err)
	}
	return secret, nil
}

// EncodeSecret returns secret in base32 without padding, as in otpauth URIs and authenticator apps.
func EncodeSecret(secret []byte) string {
	return b32.EncodeToString(secret)
}

// DecodeSecret decodes a base32 secret. It accepts lower case, padding and the spaces with which keys
// are often shown in groups.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.ToUpper(strings.ReplaceAll(s, " ", "")), "=")
	if s == "" {
		return nil, errors.New("otp: secret is empty")
	}
	secret, err := b32.DecodeString(s)
	if err != nil {
		// base32.CorruptInputError holds only an offset, never the input.
		return nil, fmt.Errorf("otp: decoding base32 secret: %w", err)
	}
	// The decoder silently drops a trailing partial quantum; a truncated or altered key must not decode.
	if b32.EncodeToString(secret) != s {
		clear(secret)
		return nil, errors.New("otp: decoding base32 secret: invalid length or trailing bits")
	}
	return secret, nil
}
