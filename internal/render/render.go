// Package render builds the objects the manager owns, as pure functions of their inputs: the verifier
// ConfigMap of a policy and the key Secret of an enrollment. It also parses them back, for the verifier.
package render

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/strictjson"
)

// Keys of the enrollment Secret's data.
const (
	SecretKeySecret    = "secret" // base32, no padding: what authenticator apps call the key
	SecretKeyMethod    = "method"
	SecretKeyAlgorithm = "algorithm"
	SecretKeyDigits    = "digits"
	SecretKeyPeriod    = "periodSeconds" // TOTP only
	SecretKeyURI       = "otpauthURI"
	SecretKeyQR        = "qr.png"
)

// ConfigMapKeyPolicy is the key of the verifier ConfigMap holding the resolved policy as JSON.
const ConfigMapKeyPolicy = "policy.json"

// QRSize is the width and height of the QR PNG in pixels.
const QRSize = 256

// SecretName is the name of an enrollment's key Secret.
func SecretName(enrollment string) string { return enrollment + "-otp" }

// ConfigMapName is the name of a policy's verifier ConfigMap.
func ConfigMapName(policy string) string { return policy + "-verifier" }

// labels are the only labels kube2fa puts on its objects: never the parent's, which may carry a GitOps
// tool's tracking labels.
func labels(policy string) map[string]string {
	return map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelPolicy: policy}
}

// Selector selects the objects kube2fa renders for policy, or for every policy when policy is empty: what
// the manager's and the verifier's caches hold of Secrets and ConfigMaps.
func Selector(policy string) k8slabels.Selector {
	set := labels(policy)
	if policy == "" {
		delete(set, v1alpha1.LabelPolicy)
	}
	return k8slabels.SelectorFromSet(set)
}

// VerifierConfigMap renders the resolved policy the verifier obeys, owned by the policy. Its content hash
// annotation changes exactly when the content does.
func VerifierConfigMap(p *v1alpha1.TwoFactorPolicy) (*corev1.ConfigMap, error) {
	data, err := json.Marshal(p.Resolve())
	if err != nil {
		return nil, fmt.Errorf("encoding resolved policy: %w", err)
	}
	sum := sha256.Sum256(data)
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:            ConfigMapName(p.Name),
			Namespace:       p.Namespace,
			Labels:          labels(p.Name),
			Annotations:     map[string]string{v1alpha1.AnnotationConfigHash: hex.EncodeToString(sum[:])},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(p, v1alpha1.GroupVersion.WithKind("TwoFactorPolicy"))},
		},
		Data: map[string]string{ConfigMapKeyPolicy: string(data)},
	}, nil
}

// ParseVerifierConfigMap returns the resolved policy held by a verifier ConfigMap. It reads the JSON
// exactly (no unknown field, nothing after the object) and refuses a policy that the CRD could never have
// produced (see ValidateResolved): the verifier must never act on content it does not understand.
func ParseVerifierConfigMap(cm *corev1.ConfigMap) (v1alpha1.ResolvedPolicy, error) {
	var p v1alpha1.ResolvedPolicy
	raw, ok := cm.Data[ConfigMapKeyPolicy]
	if !ok {
		return p, fmt.Errorf("configmap %s/%s has no %q", cm.Namespace, cm.Name, ConfigMapKeyPolicy)
	}
	if err := strictjson.Unmarshal([]byte(raw), &p); err != nil {
		return p, fmt.Errorf("decoding %q of configmap %s/%s: %w", ConfigMapKeyPolicy, cm.Namespace, cm.Name, err)
	}
	if err := ValidateResolved(p); err != nil {
		return p, fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return p, nil
}

// Bounds of a resolved policy that are not otp's: the CRD's own (see the TwoFactorPolicy markers; a test
// holds the two together).
const (
	maxIssuerLength    = 64
	minPeriodSeconds   = 15
	maxPeriodSeconds   = 300
	maxSecretBytes     = 64
	maxMaxFailures     = 100
	maxThrottleSeconds = 604800
	// maxTemporaryLockouts bounds lockout.maxTemporaryLockouts.
	maxTemporaryLockouts = 1000
	// minPendingExpiry and maxPendingExpiry bound selfEnrollment.pendingExpirySeconds.
	minPendingExpiry = 60
	maxPendingExpiry = 2592000
)

// ValidateResolved reports the first way p differs from what Resolve makes of a valid TwoFactorPolicy.
func ValidateResolved(p v1alpha1.ResolvedPolicy) error {
	switch p.Mode {
	case v1alpha1.ModeDisabled, v1alpha1.ModeOptional, v1alpha1.ModeEnforced:
	default:
		return fmt.Errorf("mode %q is not Disabled, Optional or Enforced", p.Mode)
	}
	if len(p.Methods) == 0 && p.Mode != v1alpha1.ModeDisabled {
		return errors.New("methods is empty while mode is not Disabled")
	}
	seen := map[v1alpha1.Method]bool{}
	for _, m := range p.Methods {
		if (m != v1alpha1.MethodTOTP && m != v1alpha1.MethodHOTP) || seen[m] {
			return fmt.Errorf("methods %q: unknown or repeated method", p.Methods)
		}
		seen[m] = true
	}
	if p.Issuer == "" || len(p.Issuer) > maxIssuerLength || strings.Contains(p.Issuer, ":") {
		return fmt.Errorf("issuer must be 1 to %d characters without ':'", maxIssuerLength)
	}
	totp := otp.Params{Method: v1alpha1.MethodTOTP, Algorithm: p.TOTP.Algorithm, Digits: p.TOTP.Digits, PeriodSeconds: p.TOTP.PeriodSeconds}
	hotp := otp.Params{Method: v1alpha1.MethodHOTP, Algorithm: p.HOTP.Algorithm, Digits: p.HOTP.Digits}
	for _, check := range []struct {
		ok   bool
		what string
	}{
		{totp.Validate() == nil, "totp parameters are invalid"},
		{hotp.Validate() == nil, "hotp parameters are invalid"},
		{p.TOTP.PeriodSeconds >= minPeriodSeconds && p.TOTP.PeriodSeconds <= maxPeriodSeconds, "totp.periodSeconds is out of bounds"},
		{p.TOTP.SkewSteps >= 0 && p.TOTP.SkewSteps <= otp.MaxSkewSteps, "totp.skewSteps is out of bounds"},
		{p.HOTP.LookAhead >= 0 && p.HOTP.LookAhead <= otp.MaxLookAhead, "hotp.lookAhead is out of bounds"},
		{p.HOTP.ResyncWindow >= 0 && p.HOTP.ResyncWindow <= otp.MaxResyncWindow, "hotp.resyncWindow is out of bounds"},
		{p.RecoveryCodes >= 0 && p.RecoveryCodes <= otp.MaxRecoveryCodes, "recoveryCodes is out of bounds"},
		{p.SecretBytes >= otp.MinSecretBytes && p.SecretBytes <= maxSecretBytes, "secretBytes is out of bounds"},
		{p.Lockout.MaxFailures >= 1 && p.Lockout.MaxFailures <= maxMaxFailures, "lockout.maxFailures is out of bounds"},
		{p.Lockout.ThrottleSeconds >= 0 && p.Lockout.ThrottleSeconds <= maxThrottleSeconds, "lockout.throttleSeconds is out of bounds"},
		{p.Lockout.MaxTemporaryLockouts >= 0 && p.Lockout.MaxTemporaryLockouts <= maxTemporaryLockouts, "lockout.maxTemporaryLockouts is out of bounds"},
		{p.SelfEnrollment.Mode == v1alpha1.SelfEnrollmentOpen || p.SelfEnrollment.Mode == v1alpha1.SelfEnrollmentAdminOnly, "selfEnrollment.mode is not Open or AdminOnly"},
		{p.SelfEnrollment.PendingExpirySeconds >= minPendingExpiry && p.SelfEnrollment.PendingExpirySeconds <= maxPendingExpiry, "selfEnrollment.pendingExpirySeconds is out of bounds"},
	} {
		if !check.ok {
			return errors.New(check.what)
		}
	}
	return nil
}

// ParamsFor returns the code parameters a new enrollment with method m gets under policy p.
func ParamsFor(p v1alpha1.ResolvedPolicy, m v1alpha1.Method) otp.Params {
	if m == v1alpha1.MethodHOTP {
		return otp.Params{Method: m, Algorithm: p.HOTP.Algorithm, Digits: p.HOTP.Digits}
	}
	return otp.Params{Method: m, Algorithm: p.TOTP.Algorithm, Digits: p.TOTP.Digits, PeriodSeconds: p.TOTP.PeriodSeconds}
}

// OTPSecret renders an enrollment's key Secret: the key, the snapshot of its code parameters, the
// provisioning URI and its QR code, when the URI fits in one (see HasQRCode). The Secret is immutable: the API server itself refuses to change a key;
// only deleting the Secret (or its enrollment) can replace it.
func OTPSecret(e *v1alpha1.UserEnrollment, p otp.Params, issuer string, key []byte) (*corev1.Secret, error) {
	uri, err := otp.ProvisioningURI(p, issuer, e.Spec.User, key, 0)
	if err != nil {
		return nil, fmt.Errorf("building provisioning URI: %w", err)
	}
	data := map[string][]byte{
		SecretKeySecret:    []byte(otp.EncodeSecret(key)),
		SecretKeyMethod:    []byte(p.Method),
		SecretKeyAlgorithm: []byte(p.Algorithm),
		SecretKeyDigits:    []byte(strconv.Itoa(int(p.Digits))),
		SecretKeyURI:       []byte(uri),
	}
	switch qr, err := otp.QRPNG(uri, QRSize); {
	case errors.Is(err, otp.ErrTooLongForQR): // the user types the key in; see HasQRCode
	case err != nil:
		return nil, fmt.Errorf("rendering QR code: %w", err)
	default:
		data[SecretKeyQR] = qr
	}
	if p.Method == v1alpha1.MethodTOTP {
		data[SecretKeyPeriod] = []byte(strconv.Itoa(int(p.PeriodSeconds)))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            SecretName(e.Name),
			Namespace:       e.Namespace,
			Labels:          labels(e.Spec.PolicyRef.Name),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(e, v1alpha1.GroupVersion.WithKind("UserEnrollment"))},
		},
		Type:      v1alpha1.SecretTypeOTP,
		Immutable: ptr.To(true),
		Data:      data,
	}, nil
}

// ControllingEnrollment is the controller reference of o (a key Secret, a state Lease) when it names a
// UserEnrollment, else nil. It only points the way: whoever follows it checks the enrollment's UID.
func ControllingEnrollment(o metav1.Object) *metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil || ref.Kind != "UserEnrollment" {
		return nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != v1alpha1.GroupVersion.Group {
		return nil
	}
	return ref
}

// HasQRCode reports whether OTPSecret found room for a QR code in s: not for a URI too long for one.
func HasQRCode(s *corev1.Secret) bool { return len(s.Data[SecretKeyQR]) > 0 }

// ParseOTPSecret returns the code parameters and the key of an enrollment Secret, refusing parameters that
// otp.Params.Validate refuses. Errors name the Secret and the faulty field, never the key.
func ParseOTPSecret(s *corev1.Secret) (otp.Params, []byte, error) {
	bad := func(field string) error {
		return fmt.Errorf("secret %s/%s: missing or invalid %q", s.Namespace, s.Name, field)
	}
	p := otp.Params{
		Method:    v1alpha1.Method(s.Data[SecretKeyMethod]),
		Algorithm: v1alpha1.Algorithm(s.Data[SecretKeyAlgorithm]),
	}
	digits, err := strconv.ParseInt(string(s.Data[SecretKeyDigits]), 10, 32)
	if err != nil {
		return p, nil, bad(SecretKeyDigits)
	}
	p.Digits = int32(digits)
	if p.Method == v1alpha1.MethodTOTP {
		period, err := strconv.ParseInt(string(s.Data[SecretKeyPeriod]), 10, 32)
		if err != nil {
			return p, nil, bad(SecretKeyPeriod)
		}
		p.PeriodSeconds = int32(period)
	}
	if err := p.Validate(); err != nil {
		return p, nil, fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	key, err := otp.DecodeSecret(string(s.Data[SecretKeySecret]))
	if err != nil || len(key) < otp.MinSecretBytes {
		return p, nil, bad(SecretKeySecret)
	}
	return p, key, nil
}

// Provenance is the manager's proof that it created Secret s for enrollment uid: an HMAC-SHA256, under a key
// only the manager holds, over the Secret's namespace, name, owner and data (the key and its parameters; not
// the URI and QR code, which follow from them). Anyone else can plant a Secret under an enrollment's Secret
// name with kube2fa's labels and a forged owner reference, but not this.
func Provenance(key []byte, s *corev1.Secret, uid types.UID) string {
	mac := hmac.New(sha256.New, key)
	field := func(b []byte) { // length-prefixed, so that no two different inputs run together alike
		_ = binary.Write(mac, binary.BigEndian, uint32(len(b)))
		mac.Write(b)
	}
	for _, f := range []string{s.Namespace, s.Name, string(uid)} {
		field([]byte(f))
	}
	for _, k := range []string{SecretKeySecret, SecretKeyMethod, SecretKeyAlgorithm, SecretKeyDigits, SecretKeyPeriod} {
		field([]byte(k))
		field(s.Data[k])
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ProvenanceHolds reports whether s carries the manager's Provenance for enrollment uid.
func ProvenanceHolds(key []byte, s *corev1.Secret, uid types.UID) bool {
	return len(key) > 0 && hmac.Equal([]byte(s.Annotations[v1alpha1.AnnotationProvenance]), []byte(Provenance(key, s, uid)))
}
