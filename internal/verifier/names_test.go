package verifier

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestEnrollmentNamesAreValidDeterministicAndDistinct(t *testing.T) {
	users := []string{"alice", "bob-2", "Alice", "alice@example.com", "ALICE@example.com", "a.b", "-lead",
		"名前", "x y", strings.Repeat("a", 41), strings.Repeat("a", 256), strings.Repeat("@", 256), "alice-", ""}
	seen := map[string]string{}
	for _, u := range users {
		n := EnrollmentName(u)
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 || len(n) > 249 {
			t.Errorf("%q → %q is not a valid enrollment name: %v", u, n, errs)
		}
		if EnrollmentName(u) != n {
			t.Errorf("%q: name is not deterministic", u)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q share the name %q", u, other, n)
		}
		seen[n] = u
	}
	for user, want := range map[string]string{"alice": "alice", "bob-2": "bob-2", "a.b": "a.b"} {
		if got := EnrollmentName(user); got != want {
			t.Errorf("EnrollmentName(%q) = %q, want the user itself", user, got)
		}
	}
	if got := EnrollmentName("alice@example.com"); !strings.HasPrefix(got, "alice-example-com-") {
		t.Errorf("EnrollmentName(alice@example.com) = %q, want a readable prefix", got)
	}
}
