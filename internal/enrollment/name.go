package enrollment

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// nameBase bounds the readable part of a derived name.
const nameBase = 40

// nameHashBytes is how much of the pair's SHA-256 a derived name carries: 80 bits, so that a collision
// between two pairs is out of reach (a birthday bound near 2^40 pairs in one namespace).
const nameHashBytes = 10

// Name derives the name of the UserEnrollment that self-enrollment creates for user under policy: a
// readable form of the user (its ASCII letters and digits, lowercased, other runs as "-", at most 40
// characters; "user" when nothing is left) followed by 80 bits of a hash of the exact pair, as in
// "alice-example-com-1c0a3f9e2b7d4e6f8a01". Every name ends in the hash of its own pair and no user is
// ever taken literally, so distinct pairs share a name only by a SHA-256 collision, and no user can be
// chosen to take another user's name or another policy's. `kubectl get ue --field-selector spec.user=U`
// (or the USER column) finds a user's enrollment.
func Name(policy, user string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(user) {
		if b.Len() >= nameBase {
			break
		}
		switch {
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimRight(b.String(), "-")
	if base == "" {
		base = "user"
	}
	return base + "-" + nameHash(policy, user)
}

// nameHash hashes the pair with the policy's length in front, so that no two pairs hash the same input.
func nameHash(policy, user string) string {
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(policy))))
	h.Write([]byte(policy))
	h.Write([]byte(user))
	return hex.EncodeToString(h.Sum(nil)[:nameHashBytes])
}
