package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// provenanceKeyBytes is the size of the provenance key, and the data key of its Secret.
const (
	provenanceKeyBytes = 32
	provenanceDataKey  = "key"
)

// ownNamespace is the manager's namespace: $POD_NAMESPACE, set by the Deployment; "default" outside a
// cluster.
func ownNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}

// provenanceSecret is where the provenance key lives: the flag's namespace/name, or kube2fa-provenance in
// the manager's own namespace ($POD_NAMESPACE, set by the Deployment; "default" outside a cluster).
func provenanceSecret(flagValue string) (types.NamespacedName, error) {
	if flagValue == "" {
		return types.NamespacedName{Namespace: ownNamespace(), Name: "kube2fa-provenance"}, nil
	}
	ns, name, ok := strings.Cut(flagValue, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("--provenance-secret must be NAMESPACE/NAME, not %q", flagValue)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// provenanceKey returns the manager's provenance key from Secret ref, creating the Secret with a random key
// the first time. The key must outlive restarts: it is how the manager recognises a Secret it created just
// before a crash, before it could record it.
func provenanceKey(ctx context.Context, c client.Client, ref types.NamespacedName) ([]byte, error) {
	s := &corev1.Secret{}
	err := c.Get(ctx, ref, s)
	if apierrors.IsNotFound(err) {
		key := make([]byte, provenanceKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generating the provenance key: %w", err)
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name,
				Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}},
			Type:      corev1.SecretTypeOpaque,
			Immutable: ptr.To(true),
			Data:      map[string][]byte{provenanceDataKey: key},
		}
		if err = c.Create(ctx, s); apierrors.IsAlreadyExists(err) { // another replica was first
			err = c.Get(ctx, ref, s)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the provenance key from secret %s: %w", ref, err)
	}
	if key := s.Data[provenanceDataKey]; len(key) >= provenanceKeyBytes {
		return key, nil
	}
	return nil, fmt.Errorf("secret %s holds no provenance key of %d bytes under %q", ref, provenanceKeyBytes, provenanceDataKey)
}
