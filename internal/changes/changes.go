// Package changes follows what changes in the API server from now on, without reading any object: a
// client-go RetryWatcher from the current resourceVersion, which resumes a broken watch where it was, and,
// when that version is gone, a new watch from the then current one. Whoever follows is told when a watch
// runs and when it ended, and must treat the time between as one in which anything may have changed.
package changes

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
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// NoSuchName is a name no object can have: listing it reads nothing but the current resourceVersion.
const NoSuchName = "."

// Feed is a watch of changes: Now reads the current resourceVersion, Watch watches from a version, On hears
// each change.
type Feed struct {
	What  string
	Now   func(ctx context.Context) (string, error)
	Watch toolscache.WatchFuncWithContext
	On    func(watch.Event)
	// Started is told each time a watch runs, first the first time: before any other, changes made while
	// no watch ran were not heard.
	Started func(first bool)
	// Ended is told each time a watch ended for good; until Started, changes are not heard.
	Ended func()
}

// SecretMetadata is a Feed of the metadata of the Secrets in namespace (all namespaces when empty) that
// selector selects.
func SecretMetadata(md metadata.Interface, namespace, selector string) Feed {
	secrets := md.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(namespace)
	return Feed{
		What: "secrets",
		Now: func(ctx context.Context) (string, error) {
			list, err := secrets.List(ctx, metav1.ListOptions{LabelSelector: selector,
				FieldSelector: fields.OneTermEqualSelector("metadata.name", NoSuchName).String()})
			if err != nil {
				return "", err
			}
			return list.ResourceVersion, nil
		},
		Watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return secrets.Watch(ctx, o)
		},
	}
}

// Follow runs f until ctx ends. Until a watch can start, and after one ended, it retries with a backoff.
func Follow(ctx context.Context, f Feed) {
	logger := log.FromContext(ctx).WithValues("watch", f.What)
	retry := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 8, Cap: 10 * time.Second}
	backoff := retry
	first := true
	for ctx.Err() == nil {
		rv, err := f.Now(ctx)
		if err != nil {
			logger.Error(err, "Reading the current resourceVersion failed; retrying")
			if !sleep(ctx, backoff.Step()) {
				return
			}
			continue
		}
		w, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &toolscache.ListWatch{WatchFuncWithContext: ExpiredAsEvent(f.Watch)})
		if err != nil { // only for a version that cannot start a watch ("" or "0"), which Now never reads
			logger.Error(err, "Starting the watch failed; retrying")
			if !sleep(ctx, backoff.Step()) {
				return
			}
			continue
		}
		if f.Started != nil {
			f.Started(first)
		}
		first = false
		began := time.Now()
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				logger.Info("The watch ended; changes until it runs again are not heard", "reason", apierrors.ReasonForError(apierrors.FromObject(ev.Object)))
				break
			}
			f.On(ev)
		}
		w.Stop()
		if f.Ended != nil {
			f.Ended()
		}
		if time.Since(began) > time.Minute { // it ran: the next failure is a new one
			backoff = retry
		}
		if !sleep(ctx, backoff.Step()) {
			return
		}
	}
}

// ExpiredAsEvent turns a watch refused at once because its version expired into a watch whose one event
// says so: client-go's RetryWatcher ends on that event, and would retry the refused call for ever.
func ExpiredAsEvent(watchFunc toolscache.WatchFuncWithContext) toolscache.WatchFuncWithContext {
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
