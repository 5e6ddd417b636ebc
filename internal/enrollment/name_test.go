package enrollment

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxDerivedName leaves room within an object name's 63 characters that tools expect for nothing, and
// within 253 for the Secret's "-otp" and a generated name's suffix.
const maxDerivedName = 63

func validName(t *testing.T, policy, user, name string) {
	t.Helper()
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || len(name) > maxDerivedName {
		t.Fatalf("Name(%q, %q) = %q is not a valid enrollment name: %v", policy, user, name, errs)
	}
}

// The collisions the review found in the name that left the policy out and kept valid users literally.
func TestNamesOfDistinctPairsDiffer(t *testing.T) {
	pairs := [][2]string{
		{"webapp", "alice"}, {"admin", "alice"}, // one user under two policies of one namespace
		{"webapp", "bob@corp.com"}, {"webapp", "bob-corp-com-32e7ccba"}, // a user named like another's name
		{"webapp", "名前"}, {"webapp", "user-7ec26292"},
		{"webapp", "Alice"}, {"webapp", "ALICE"},
		{"a", "bc"}, {"ab", "c"}, // the pair's boundary is part of what is hashed
		{"webapp", strings.Repeat("a", 256)}, {"webapp", strings.Repeat("a", 255)},
		{"webapp", strings.Repeat("@", 256)}, {"webapp", ""},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		n := Name(p[0], p[1])
		validName(t, p[0], p[1], n)
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q share the name %q", p, other, n)
		}
		seen[n] = p
		if n == p[1] {
			t.Errorf("Name(%q) takes the user literally", p)
		}
		// A user spelled as another pair's derived name never gets that name.
		if Name(p[0], n) == n {
			t.Errorf("user %q gets its own spelling as a name", n)
		}
	}
	for user, prefix := range map[string]string{"alice": "alice-", "alice@example.com": "alice-example-com-",
		"名前": "user-", "-lead": "lead-", strings.Repeat("x", 99): strings.Repeat("x", 40) + "-"} {
		if got := Name("webapp", user); !strings.HasPrefix(got, prefix) || len(got) != len(prefix)+2*nameHashBytes {
			t.Errorf("Name(webapp, %q) = %q, want %q and the hash", user, got, prefix)
		}
	}
}

// FuzzName: the name is a valid object name, and two distinct (policy, user) pairs never share one.
// Longer run: go test -run '^$' -fuzz FuzzName -fuzztime 1m ./internal/enrollment
func FuzzName(f *testing.F) {
	f.Add("webapp", "alice", "admin", "alice")
	f.Add("webapp", "bob@corp.com", "webapp", "bob-corp-com-32e7ccba")
	f.Add("webapp", "名前", "webapp", "user-7ec26292")
	f.Add("a", "bc", "ab", "c")
	f.Add("webapp", "alice", "webapp", Name("webapp", "alice"))
	f.Fuzz(func(t *testing.T, p1, u1, p2, u2 string) {
		n1, n2 := Name(p1, u1), Name(p2, u2)
		if again := Name(p1, u1); again != n1 {
			t.Fatalf("(%q, %q) is named %q, then %q", p1, u1, n1, again)
		}
		validName(t, p1, u1, n1)
		validName(t, p2, u2, n2)
		if (p1 != p2 || u1 != u2) && n1 == n2 {
			t.Fatalf("(%q, %q) and (%q, %q) share the name %q", p1, u1, p2, u2, n1)
		}
	})
}
