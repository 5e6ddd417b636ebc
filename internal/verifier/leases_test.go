package verifier

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
)

// crLeases is a LeaseClient over a controller-runtime client (a fake one, in tests that need no API
// server): Update is guarded by the resourceVersion, as the API server's is.
type crLeases struct {
	c  client.Client
	ns string
}

func (l crLeases) Get(ctx context.Context, name string, _ metav1.GetOptions) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	return out, l.c.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: name}, out)
}

func (l crLeases) Create(ctx context.Context, in *coordinationv1.Lease, _ metav1.CreateOptions) (*coordinationv1.Lease, error) {
	out := in.DeepCopy()
	return out, l.c.Create(ctx, out)
}

func (l crLeases) Update(ctx context.Context, in *coordinationv1.Lease, _ metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	out := in.DeepCopy()
	return out, l.c.Update(ctx, out)
}

func (l crLeases) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return l.c.Delete(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.ns, Name: name}},
		&client.DeleteOptions{Preconditions: opts.Preconditions})
}

// stateName is the name of e's state Lease.
func stateName(e *v1alpha1.UserEnrollment) string {
	return render.StateLeaseName(e.Spec.PolicyRef.Name, e.Spec.User)
}
