package testenv

import (
	"context"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MountSecret does what the kubelet does for a Secret volume, which envtest has no kubelet for: it writes
// the Secret's data into dir, each key a file, and keeps them current until ctx ends; the returned channel
// closes when it has stopped. The manager's webhook serves the certificate it keeps in a Secret this way.
func MountSecret(ctx context.Context, c client.Reader, key client.ObjectKey, dir string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var seen string
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s := &corev1.Secret{}
			if err := c.Get(ctx, key, s); err == nil && s.ResourceVersion != seen {
				seen = s.ResourceVersion
				for name, data := range s.Data {
					// Written whole, then renamed, as the kubelet swaps its atomic-writer directory.
					tmp := filepath.Join(dir, "."+name+".tmp")
					if os.WriteFile(tmp, data, 0o600) == nil {
						_ = os.Rename(tmp, filepath.Join(dir, name))
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}
