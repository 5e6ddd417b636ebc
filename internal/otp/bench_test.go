package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"testing"
	"time"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

var benchAlgorithms = []struct {
	alg v1alpha1.Algorithm
	h   func() hash.Hash
}{
	{v1alpha1.AlgorithmSHA1, sha1.New},
	{v1alpha1.AlgorithmSHA256, sha256.New},
	{v1alpha1.AlgorithmSHA512, sha512.New},
}

// BenchmarkCheckTOTP checks a valid 6-digit code with skew 1 (three HMACs).
func BenchmarkCheckTOTP(b *testing.B) {
	now := time.Unix(1234567890, 0)
	for _, a := range benchAlgorithms {
		b.Run(string(a.alg), func(b *testing.B) {
			secret, p := seeds[a.alg], totpParams(a.alg, 6)
			code := mustCode(b, secret, a.alg, 6, now.Unix()/30)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := CheckTOTP(secret, p, code, now, 1, nil); !ok {
					b.Fatal("code rejected")
				}
			}
		})
	}
}

// BenchmarkHMAC is the floor for one code: a bare crypto/hmac over an 8-byte counter with the same key.
func BenchmarkHMAC(b *testing.B) {
	for _, a := range benchAlgorithms {
		b.Run(string(a.alg), func(b *testing.B) {
			secret := seeds[a.alg]
			var msg [8]byte
			binary.BigEndian.PutUint64(msg[:], 1234567890/30)
			sum := make([]byte, 0, sha512.Size)
			b.ReportAllocs()
			for b.Loop() {
				mac := hmac.New(a.h, secret)
				mac.Write(msg[:])
				sum = mac.Sum(sum[:0])
			}
		})
	}
}

// BenchmarkProvision is what the manager does for every new enrollment: a key, its URI and its QR code.
func BenchmarkProvision(b *testing.B) {
	p := totpParams(v1alpha1.AlgorithmSHA1, 6)
	b.ReportAllocs()
	for b.Loop() {
		secret, err := GenerateSecret(20, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		uri, err := ProvisioningURI(p, "kube2fa", "alice@example.com", secret, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := QRPNG(uri, 256); err != nil {
			b.Fatal(err)
		}
	}
}
