package enrollment

import (
	"testing"
	"unicode/utf8"
)

// No user the verifier serves is one the CRD would refuse, and none holds what makes users look alike.
// Longer run: go test -run '^$' -fuzz FuzzValidUser -fuzztime 1m ./internal/enrollment
func FuzzValidUser(f *testing.F) {
	for _, s := range []string{"alice", "ALICE", "名前", "alice\u202e", "a\x00b", "\xff", "", "\uFFFD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if ValidUser(user) != nil {
			return
		}
		if !utf8.ValidString(user) || user == "" || utf8.RuneCountInString(user) > MaxUserLength {
			t.Fatalf("accepted %q", user)
		}
		for _, r := range user {
			if r < 0x20 || (r >= 0x7F && r <= 0x9F) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
				r == 0x200E || r == 0x200F || r == utf8.RuneError {
				t.Fatalf("accepted %q holding %U", user, r)
			}
		}
	})
}
