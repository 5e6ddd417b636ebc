package verifier

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
)

// noSuchName is a name no object can have: listing it reads nothing but the current resourceVersion.
const noSuchName = "."

// feed is a watch of changes, from the current resourceVersion on, without reading any object: now reads
// that version, watch watches from a version, on hears each change.
type feed struct {
	what  string
	now   func(ctx context.Context) (string, error)
	watch toolscache.WatchFuncWithContext
	on    func(watch.Event)
}

// feeds are the watches that keep a replica's directory current: its policy's enrollments (every change
// evicts the user's) and the metadata of its Secrets (a deletion evicts the key). Neither changes on a
// decision, which writes the user's state Lease.
func feeds(cfg Config, c client.WithWatch, md metadata.Interface, d *directory) []feed {
	secrets := md.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(cfg.Namespace)
	ours := render.Selector(cfg.Policy).String()
	ofPolicy := fields.OneTermEqualSelector("spec.policyRef.name", cfg.Policy)
	return []feed{{
		what: "userenrollments",
		now: func(ctx context.Context) (string, error) {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("UserEnrollmentList"))
			err := c.List(ctx, list, client.InNamespace(cfg.Namespace), client.MatchingFields{"metadata.name": noSuchName})
			return list.ResourceVersion, err
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, &v1alpha1.UserEnrollmentList{}, client.InNamespace(cfg.Namespace),
				&client.ListOptions{FieldSelector: ofPolicy, Raw: &o})
		},
		on: func(ev watch.Event) {
			if e, ok := ev.Object.(*v1alpha1.UserEnrollment); ok {
				d.changed(e.Spec.User)
			}
		},
	}, {
		what: "secrets",
		now: func(ctx context.Context) (string, error) {
			list, err := secrets.List(ctx, metav1.ListOptions{LabelSelector: ours,
				FieldSelector: fields.OneTermEqualSelector("metadata.name", noSuchName).String()})
			if err != nil {
				return "", err
			}
			return list.ResourceVersion, nil
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = ours
			return secrets.Watch(ctx, o)
		},
		on: func(ev watch.Event) {
			if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok && ev.Type == watch.Deleted {
				d.keyGone(m.UID)
			}
		},
	}}
}

// follow runs f until ctx ends: a client-go RetryWatcher from the current resourceVersion, which resumes a
// broken watch where it was. When the watch ends for good (its version expired, the watch is refused), d
// forgets everything, and f starts again from the then current version. first hears once that the watch
// started; until it can, follow retries.
func (d *directory) follow(ctx context.Context, f feed, first chan<- struct{}) {
	logger := log.FromContext(ctx).WithValues("watch", f.what)
	retry := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 8, Cap: 10 * time.Second}
	backoff := retry
	for ctx.Err() == nil {
		rv, err := f.now(ctx)
		if err != nil {
			logger.Error(err, "Reading the current resourceVersion failed; retrying")
			if !sleep(ctx, backoff.Step()) {
				return
			}
			continue
		}
		w, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &toolscache.ListWatch{WatchFuncWithContext: expiredAsEvent(f.watch)})
		if err != nil { // only for a version that cannot start a watch ("" or "0"), which now never reads
			logger.Error(err, "Starting the watch failed; retrying")
			if !sleep(ctx, backoff.Step()) {
				return
			}
			continue
		}
		d.started()
		began := time.Now()
		if first != nil {
			first <- struct{}{}
			first = nil
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				logger.Info("The watch ended; forgetting every enrollment and key read", "reason", apiReason(apierrors.FromObject(ev.Object)))
				break
			}
			f.on(ev)
		}
		w.Stop()
		d.stopped()
		if time.Since(began) > time.Minute { // it ran: the next failure is a new one
			backoff = retry
		}
		if !sleep(ctx, backoff.Step()) {
			return
		}
	}
}

// expiredAsEvent turns a watch refused at once because its version expired into a watch whose one event
// says so: client-go's RetryWatcher ends on that event, and would retry the refused call for ever.
func expiredAsEvent(watchFunc toolscache.WatchFuncWithContext) toolscache.WatchFuncWithContext {
	return func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFunc(ctx, o)
		if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				return nil, err
			}
			events := make(chan watch.Event, 1)
			s := status.Status()
			events <- watch.Event{Type: watch.Error, Object: &s}
			close(events)
			return watch.NewProxyWatcher(events), nil
		}
		return w, err
	}
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
