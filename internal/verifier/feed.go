package verifier

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/changes"
	"github.com/kube2fa/kube2fa/internal/render"
)

// feeds are the watches that keep a replica's directory current: its policy's enrollments (every change
// evicts the user's) and the metadata of its Secrets (a deletion evicts the key). Neither changes on a
// decision, which writes the user's state Lease.
func feeds(cfg Config, c client.WithWatch, md metadata.Interface, d *directory) []changes.Feed {
	ofPolicy := fields.OneTermEqualSelector("spec.policyRef.name", cfg.Policy)
	enrollments := changes.Feed{
		What: "userenrollments",
		Now: func(ctx context.Context) (string, error) {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("UserEnrollmentList"))
			err := c.List(ctx, list, client.InNamespace(cfg.Namespace), client.MatchingFields{"metadata.name": changes.NoSuchName})
			return list.ResourceVersion, err
		},
		Watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, &v1alpha1.UserEnrollmentList{}, client.InNamespace(cfg.Namespace),
				&client.ListOptions{FieldSelector: ofPolicy, Raw: &o})
		},
		On: func(ev watch.Event) {
			if e, ok := ev.Object.(*v1alpha1.UserEnrollment); ok {
				d.changed(e.Spec.User)
			}
		},
	}
	secrets := changes.SecretMetadata(md, cfg.Namespace, render.Selector(cfg.Policy).String())
	secrets.On = func(ev watch.Event) {
		if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok && ev.Type == watch.Deleted {
			d.keyGone(m.UID)
		}
	}
	return []changes.Feed{enrollments, secrets}
}

// follow runs f (see changes.Follow) for d: while no watch runs, d forgets everything and remembers nothing,
// and first hears once that f's watch started.
func (d *directory) follow(ctx context.Context, f changes.Feed, first chan<- struct{}) {
	f.Started = func(isFirst bool) {
		d.started()
		if isFirst {
			first <- struct{}{}
		}
	}
	f.Ended = d.stopped
	changes.Follow(ctx, f)
}
