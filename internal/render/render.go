// Package render builds the objects the manager owns, as pure functions of their inputs: the verifier
// ConfigMap of a policy and the key Secret of an enrollment. It also parses them back, for the verifier.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
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

// ParseVerifierConfigMap returns the resolved policy held by a verifier ConfigMap.
func ParseVerifierConfigMap(cm *corev1.ConfigMap) (v1alpha1.ResolvedPolicy, error) {
	var p v1alpha1.ResolvedPolicy
	raw, ok := cm.Data[ConfigMapKeyPolicy]
	if !ok {
		return p, fmt.Errorf("configmap %s/%s has no %q", cm.Namespace, cm.Name, ConfigMapKeyPolicy)
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return p, fmt.Errorf("decoding %q of configmap %s/%s: %w", ConfigMapKeyPolicy, cm.Namespace, cm.Name, err)
	}
	return p, nil
}

// ParamsFor returns the code parameters a new enrollment with method m gets under policy p.
func ParamsFor(p v1alpha1.ResolvedPolicy, m v1alpha1.Method) otp.Params {
	if m == v1alpha1.MethodHOTP {
		return otp.Params{Method: m, Algorithm: p.HOTP.Algorithm, Digits: p.HOTP.Digits}
	}
	return otp.Params{Method: m, Algorithm: p.TOTP.Algorithm, Digits: p.TOTP.Digits, PeriodSeconds: p.TOTP.PeriodSeconds}
}

// OTPSecret renders an enrollment's key Secret: the key, the snapshot of its code parameters, the
// provisioning URI and its QR code. The Secret is immutable: the API server itself refuses to change a key;
// only deleting the Secret (or its enrollment) can replace it.
func OTPSecret(e *v1alpha1.UserEnrollment, p otp.Params, issuer string, key []byte) (*corev1.Secret, error) {
	uri, err := otp.ProvisioningURI(p, issuer, e.Spec.User, key, 0)
	if err != nil {
		return nil, fmt.Errorf("building provisioning URI: %w", err)
	}
	qr, err := otp.QRPNG(uri, QRSize)
	if err != nil {
		return nil, fmt.Errorf("rendering QR code: %w", err)
	}
	data := map[string][]byte{
		SecretKeySecret:    []byte(otp.EncodeSecret(key)),
		SecretKeyMethod:    []byte(p.Method),
		SecretKeyAlgorithm: []byte(p.Algorithm),
		SecretKeyDigits:    []byte(strconv.Itoa(int(p.Digits))),
		SecretKeyURI:       []byte(uri),
		SecretKeyQR:        qr,
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

// DropEnrollmentMaterial removes from s what only enrollment shows (the provisioning URI and the QR code,
// most of the Secret's size), leaving what ParseOTPSecret reads.
func DropEnrollmentMaterial(s *corev1.Secret) {
	delete(s.Data, SecretKeyURI)
	delete(s.Data, SecretKeyQR)
}

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
	if err != nil {
		return p, nil, bad(SecretKeySecret)
	}
	return p, key, nil
}
