package render

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

func TestProvenanceProvesTheManagerMadeThisSecretForThisEnrollment(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	e := enrollment()
	s, err := OTPSecret(e, ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP), "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	s.Annotations = map[string]string{v1alpha1.AnnotationProvenance: Provenance(key, s, e.UID)}
	if !ProvenanceHolds(key, s, e.UID) {
		t.Fatal("the manager's own Secret does not hold its provenance")
	}
	for name, forge := range map[string]func() (otherKey []byte, uid types.UID){
		"another key signs it":         func() ([]byte, types.UID) { return []byte("an attacker's key of thirty-two b"), e.UID },
		"no key":                       func() ([]byte, types.UID) { return nil, e.UID },
		"another enrollment claims it": func() ([]byte, types.UID) { return key, "other-uid" },
	} {
		k, uid := forge()
		if ProvenanceHolds(k, s, uid) {
			t.Errorf("%s: the provenance holds", name)
		}
	}
	for field, value := range map[string]string{SecretKeySecret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", SecretKeyDigits: "8",
		SecretKeyAlgorithm: "SHA256", SecretKeyPeriod: "60", SecretKeyMethod: "HOTP"} {
		altered := s.DeepCopy()
		altered.Data[field] = []byte(value)
		if ProvenanceHolds(key, altered, e.UID) {
			t.Errorf("a Secret with another %s holds the provenance", field)
		}
	}
	renamed := s.DeepCopy()
	renamed.Name = "bob-otp"
	if ProvenanceHolds(key, renamed, e.UID) {
		t.Error("a copy under another name holds the provenance")
	}
}
