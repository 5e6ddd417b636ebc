package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
)

func (o *options) unlockCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock USER",
		Short: "Clear a user's lock and failures, and wait until kube2fa has",
		Long: `unlock sets a new value of the twofactor.kube2fa.io/unlock annotation on the user's enrollments (under
--policy, or all of them) and waits until the manager has cleared the lock and the failure count.`,
		Example: `  kubectl 2fa unlock alice -n shop
  kubectl 2fa unlock alice -n shop --policy webapp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := o.now().UTC().Format(time.RFC3339Nano)
			return o.eachEnrollment(cmd.Context(), args[0], func(c client.Client, e *v1alpha1.UserEnrollment) error {
				return o.unlock(cmd.Context(), c, e, value)
			})
		},
	}
}

// unlock sets the unlock annotation of e to value and waits until the manager handled it.
func (o *options) unlock(ctx context.Context, c client.Client, e *v1alpha1.UserEnrollment, value string) error {
	before := e.DeepCopy()
	metav1.SetMetaDataAnnotation(&e.ObjectMeta, v1alpha1.AnnotationUnlock, value)
	if err := c.Patch(ctx, e, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("annotating %s: %w", e.Name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, o.timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(e), e); err != nil {
			return false, err
		}
		return e.Status.LastHandledUnlock == value && !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the manager to unlock %s (is it running?): %w", e.Name, err)
	}
	_, _ = fmt.Fprintf(o.streams.Out, "%s unlocked under policy %s: failures reset\n", e.Spec.User, e.Spec.PolicyRef.Name)
	return nil
}

func (o *options) resetCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset USER",
		Short: "Delete a user's enrollment and key (the recovery), and wait until the key is gone",
		Long: `reset deletes the user's enrollments (under --policy, or all of them) after asking, and waits until their
key Secrets are gone. The user enrolls again from scratch: at the next login under an Enforced policy, when
they choose under Optional. Their authenticator app, and their recovery codes, no longer work.`,
		Example: `  kubectl 2fa reset alice -n shop
  kubectl 2fa reset alice -n shop --policy webapp --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.eachEnrollment(cmd.Context(), args[0], func(c client.Client, e *v1alpha1.UserEnrollment) error {
				if !yes && !o.confirm(fmt.Sprintf("Delete %s's enrollment %s under policy %s, with its key?", e.Spec.User, e.Name, e.Spec.PolicyRef.Name)) {
					return errors.New("not confirmed: nothing deleted")
				}
				return o.reset(cmd.Context(), c, e)
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// reset deletes e and waits until its key Secret is gone (the garbage collector deletes it after e).
func (o *options) reset(ctx context.Context, c client.Client, e *v1alpha1.UserEnrollment) error {
	key := client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}
	var secretUID types.UID
	if s := (&corev1.Secret{}); c.Get(ctx, key, s) == nil && metav1.IsControlledBy(s, e) {
		secretUID = s.UID
	}
	if err := c.Delete(ctx, e, client.Preconditions{UID: &e.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", e.Name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, o.timeout, true, func(ctx context.Context) (bool, error) {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return secretUID == "" || s.UID != secretUID, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the key Secret %s to be garbage-collected: %w", key.Name, err)
	}
	_, _ = fmt.Fprintf(o.streams.Out, "%s reset under policy %s: enrollment %s and its key deleted; the user enrolls again\n",
		e.Spec.User, e.Spec.PolicyRef.Name, e.Name)
	return nil
}

func (o *options) reissueCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reissue USER",
		Short: "Give a user whose confirmed key was lost a new key, and show its QR code",
		Long: `reissue is for an enrollment whose key Secret is gone (Ready=False KeyLost: the verifier refuses every
code): it sets a new value of the twofactor.kube2fa.io/reissue annotation, waits until the manager has
issued a new key, and prints its QR code as enroll does. The user confirms it with a first code.`,
		Example: `  kubectl 2fa reissue alice -n shop`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := o.now().UTC().Format(time.RFC3339Nano)
			return o.eachEnrollment(cmd.Context(), args[0], func(c client.Client, e *v1alpha1.UserEnrollment) error {
				if r := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Reason != v1alpha1.ReasonKeyLost {
					return fmt.Errorf("%s's enrollment %s has not lost its key: nothing to reissue", e.Spec.User, e.Name)
				}
				before := e.DeepCopy()
				metav1.SetMetaDataAnnotation(&e.ObjectMeta, v1alpha1.AnnotationReissue, value)
				if err := c.Patch(cmd.Context(), e, client.MergeFrom(before)); err != nil {
					return fmt.Errorf("annotating %s: %w", e.Name, err)
				}
				err := wait.PollUntilContextTimeout(cmd.Context(), 100*time.Millisecond, o.timeout, true, func(ctx context.Context) (bool, error) {
					if err := c.Get(ctx, client.ObjectKeyFromObject(e), e); err != nil {
						return false, err
					}
					return e.Status.LastHandledReissue == value && meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady), nil
				})
				if err != nil {
					return fmt.Errorf("waiting for the manager to issue %s a new key (is it running?): %w", e.Name, err)
				}
				return o.showKey(cmd.Context(), c, e)
			})
		},
	}
}
