package otp

import (
	"strings"
	"testing"
)

func TestRecoveryCodesAreDistinctReadableAndBoundToKeyAndGeneration(t *testing.T) {
	key := []byte("12345678901234567890")
	codes := RecoveryCodes(key, 1, MaxRecoveryCodes)
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 19 || strings.Count(c, "-") != 3 || strings.ContainsAny(c, "ILOU") {
			t.Fatalf("code %q is not four groups of an unambiguous alphabet", c)
		}
		if seen[c] {
			t.Fatalf("code %q twice", c)
		}
		seen[c] = true
	}
	for _, other := range [][]string{RecoveryCodes(key, 2, MaxRecoveryCodes), RecoveryCodes([]byte("12345678901234567891"), 1, MaxRecoveryCodes)} {
		for _, c := range other {
			if seen[c] {
				t.Fatalf("code %q of another generation or key is valid here", c)
			}
		}
	}
	if again := RecoveryCodes(key, 1, 3); again[0] != codes[0] || again[2] != codes[2] {
		t.Fatal("the codes of a generation are not stable")
	}
}

func TestMatchRecoveryCodeReadsAsTypedAndTellsUsedFromWrong(t *testing.T) {
	key := []byte("12345678901234567890")
	codes := RecoveryCodes(key, 3, 10)
	typed := strings.ToLower(strings.ReplaceAll(codes[4], "-", " "))
	if i, m := MatchRecoveryCode(key, 3, 10, 0, typed); i != 4 || m != Fresh {
		t.Fatalf("typed in lower case with spaces: %d %v", i, m)
	}
	if i, m := MatchRecoveryCode(key, 3, 10, 1<<4, codes[4]); i != 4 || m != Replayed {
		t.Fatalf("a used code: %d %v", i, m)
	}
	if _, m := MatchRecoveryCode(key, 3, 4, 0, codes[4]); m != NoMatch {
		t.Fatal("a code beyond the count issued matched")
	}
	if _, m := MatchRecoveryCode(key, 2, 10, 0, codes[4]); m != NoMatch {
		t.Fatal("a code of the previous generation matched after a regeneration")
	}
	for _, bad := range []string{"", "123456", codes[4] + "X", "UUUU-UUUU-UUUU-UUUU", "7K2M-9QXD-4HTB-R8W"} {
		if _, m := MatchRecoveryCode(key, 3, 10, 0, bad); m != NoMatch {
			t.Fatalf("%q matched", bad)
		}
	}
}

func TestNormalizeRecoveryCodeReadsConfusableLettersAsDigits(t *testing.T) {
	got, ok := NormalizeRecoveryCode("o1il-0000-1111-abcd")
	if !ok || got != "011100001111ABCD" {
		t.Fatalf("got %q %v", got, ok)
	}
}
