package verifier

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxNameBase leaves room for "-<hash>" and the Secret's "-otp" within an object name.
const maxNameBase = 40

// EnrollmentName derives the UserEnrollment name of a self-enrolling user: the user itself when it is
// already a valid, lowercase object name (so `kubectl get ue alice` finds alice), else a readable
// sanitised form followed by a hash of the exact user, so that different users never share a name.
func EnrollmentName(user string) string {
	if len(user) <= maxNameBase && len(validation.IsDNS1123Subdomain(user)) == 0 {
		return user
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(user) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= maxNameBase {
			break
		}
	}
	base := strings.TrimRight(b.String(), "-")
	sum := sha256.Sum256([]byte(user))
	hash := hex.EncodeToString(sum[:4])
	if base == "" {
		return "user-" + hash
	}
	return base + "-" + hash
}
