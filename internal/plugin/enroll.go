package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

func (o *options) enrollCommand() *cobra.Command {
	var method string
	cmd := &cobra.Command{
		Use:   "enroll USER --policy POLICY",
		Short: "Enroll a user as an administrator: create the enrollment, wait for its key, show its QR code",
		Long: `enroll creates the user's UserEnrollment under the policy (named from the policy and the user, as
self-enrollment names it), waits until the manager has provisioned its key, and prints the QR code on the
terminal (a phone scans it from the screen), the key to type in, and the otpauth URI. The user then
confirms it with a first code through the application. Under selfEnrollment.mode AdminOnly this is how
users get their second factor.`,
		Example: `  kubectl 2fa enroll alice --policy webapp -n shop
  kubectl 2fa enroll alice --policy webapp -n shop --method HOTP`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.policy == "" {
				return errors.New("--policy is required: the policy to enroll the user under")
			}
			if err := enrollment.ValidUser(args[0]); err != nil {
				return err
			}
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			e, err := o.create(cmd.Context(), c, ns, args[0], v1alpha1.Method(method))
			if err != nil {
				return err
			}
			if e, err = o.awaitKey(cmd.Context(), c, e); err != nil {
				return err
			}
			return o.showKey(cmd.Context(), c, e)
		},
	}
	cmd.Flags().StringVar(&method, "method", "", "TOTP or HOTP (default: the policy's first method)")
	return cmd
}

func (o *options) qrCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "qr USER",
		Short: "Show a pending enrollment's QR code again (never once it is confirmed)",
		Example: `  kubectl 2fa qr alice -n shop
  kubectl 2fa qr alice -n shop --policy webapp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.eachEnrollment(cmd.Context(), args[0], func(c client.Client, e *v1alpha1.UserEnrollment) error {
				return o.showKey(cmd.Context(), c, e)
			})
		},
	}
}

// create creates user's enrollment under o.policy, or returns the pending one that exists.
func (o *options) create(ctx context.Context, c client.Client, ns, user string, method v1alpha1.Method) (*v1alpha1.UserEnrollment, error) {
	e := &v1alpha1.UserEnrollment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: enrollment.Name(o.policy, user)},
		Spec:       v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: o.policy}, User: user, Method: method},
	}
	err := c.Create(ctx, e)
	if apierrors.IsAlreadyExists(err) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(e), e); err != nil {
			return nil, err
		}
		if e.Spec.User != user || e.Spec.PolicyRef.Name != o.policy {
			return nil, fmt.Errorf("enrollment %s exists and is not %q's under %s", e.Name, user, o.policy)
		}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("creating the enrollment: %w", err)
	}
	return e, nil
}

// awaitKey waits until the manager has bound e's key, or says why it will not.
func (o *options) awaitKey(ctx context.Context, c client.Client, e *v1alpha1.UserEnrollment) (*v1alpha1.UserEnrollment, error) {
	var why string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, o.timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(e), e); err != nil {
			return false, err
		}
		r := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady)
		switch {
		case r == nil || r.ObservedGeneration != e.Generation:
			return false, nil
		case r.Status == metav1.ConditionTrue:
			return true, nil
		case r.Reason != v1alpha1.ReasonNoKey:
			why = r.Reason + ": " + r.Message
			return true, nil
		}
		return false, nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("waiting for the manager to provision %s's key (is it running?): %w", e.Name, err)
	case why != "":
		return nil, fmt.Errorf("enrollment %s gets no key: %s", e.Name, why)
	}
	return e, nil
}

// showKey prints the QR code, key and URI of e, a pending enrollment.
func (o *options) showKey(ctx context.Context, c client.Client, e *v1alpha1.UserEnrollment) error {
	switch {
	case e.Status.ConfirmedAt != nil:
		return fmt.Errorf("%s's enrollment %s under %s is confirmed: its key is not shown again (kubectl 2fa reset %s starts over)",
			e.Spec.User, e.Name, e.Spec.PolicyRef.Name, e.Spec.User)
	case e.Status.SecretUID == "":
		return fmt.Errorf("%s's enrollment %s has no key yet", e.Spec.User, e.Name)
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Status.SecretName}, s); err != nil {
		return fmt.Errorf("reading the key Secret: %w", err)
	}
	if string(s.UID) != e.Status.SecretUID || !metav1.IsControlledBy(s, e) {
		return fmt.Errorf("secret %s is not %s's key", s.Name, e.Name)
	}
	uri, key := string(s.Data[render.SecretKeyURI]), string(s.Data[render.SecretKeySecret])
	w := o.streams.Out
	_, _ = fmt.Fprintf(w, "%s's enrollment %s under policy %s waits for a first code.\n", e.Spec.User, e.Name, e.Spec.PolicyRef.Name)
	switch qr, err := otp.QRText(uri); {
	case errors.Is(err, otp.ErrTooLongForQR):
		_, _ = fmt.Fprintln(w, "The URI is too long for a QR code: type the key in.")
	case err != nil:
		return err
	default:
		_, _ = fmt.Fprintf(w, "Scan it with an authenticator app:\n\n%s\n", qr)
	}
	_, _ = fmt.Fprintf(w, "Key: %s\nURI: %s\n", group(key), uri)
	_, _ = fmt.Fprintln(w, "The user confirms it with a first code through the application.")
	return nil
}

// group writes a key in groups of four, as authenticator apps show it.
func group(key string) string {
	var parts []string
	for len(key) > 4 {
		parts, key = append(parts, key[:4]), key[4:]
	}
	return strings.Join(append(parts, key), " ")
}
