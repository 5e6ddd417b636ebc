package otp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"strings"
)

// Recovery codes are single-use codes a user keeps on paper for when the authenticator is lost. They are
// derived from the enrollment's own key, a generation number and their index, so that nothing but the key
// (which already lives in the key Secret) is secret, and a regeneration (a new generation) makes every
// earlier code worthless. Each is 80 bits written as 16 characters of Crockford's base32 in four groups:
// no I, L, O or U to misread, and input is read case- and space-insensitively, with I and L read as 1 and
// O as 0, as Crockford decodes.

// RecoveryCodeBits is the strength of one recovery code.
const RecoveryCodeBits = 80

// MaxRecoveryCodes bounds how many recovery codes an enrollment holds (a policy's recoveryCodes.count).
const MaxRecoveryCodes = 20

const (
	crockford       = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	recoveryLen     = RecoveryCodeBits / 5 // characters
	recoveryGroup   = 4
	recoveryContext = "kube2fa recovery code\x00"
)

// RecoveryCodes returns the n recovery codes of generation of the key, formatted for people
// ("7K2M-9QXD-4HTB-R8WN").
func RecoveryCodes(key []byte, generation int32, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = format(recoveryCode(key, generation, i))
	}
	return out
}

// MatchRecoveryCode finds input among the n recovery codes of generation of the key: the index of the code
// and Fresh when it is unused (bit i of used clear), Replayed when it was used, NoMatch otherwise. Every
// code is compared in constant time.
func MatchRecoveryCode(key []byte, generation int32, n int, used uint64, input string) (int, Match) {
	in, ok := NormalizeRecoveryCode(input)
	if !ok {
		return 0, NoMatch
	}
	found, match := 0, NoMatch
	for i := range n {
		if subtle.ConstantTimeCompare([]byte(recoveryCode(key, generation, i)), []byte(in)) == 1 {
			found, match = i, Fresh
			if used&(1<<i) != 0 {
				match = Replayed
			}
		}
	}
	return found, match
}

// NormalizeRecoveryCode reads a recovery code as typed: case, spaces and hyphens do not matter, and the
// letters people confuse with digits (I, L, O) read as those digits. It reports false for anything that is
// not 16 characters of the alphabet.
func NormalizeRecoveryCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case r == 'I' || r == 'L':
			r = '1'
		case r == 'O':
			r = '0'
		case !strings.ContainsRune(crockford, r):
			return "", false
		}
		if b.Len() == recoveryLen {
			return "", false
		}
		b.WriteRune(r)
	}
	return b.String(), b.Len() == recoveryLen
}

// recoveryCode is code i of generation, unformatted: the first 80 bits of an HMAC-SHA256 under the key.
func recoveryCode(key []byte, generation int32, i int) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(recoveryContext))
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(generation)))
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
	sum := m.Sum(nil)
	out := make([]byte, recoveryLen)
	var acc uint64
	bits := 0
	j := 0
	for _, c := range sum[:RecoveryCodeBits/8] {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[j] = crockford[(acc>>bits)&31]
			j++
		}
	}
	return string(out)
}

func format(code string) string {
	groups := make([]string, 0, recoveryLen/recoveryGroup)
	for i := 0; i < len(code); i += recoveryGroup {
		groups = append(groups, code[i:i+recoveryGroup])
	}
	return strings.Join(groups, "-")
}
