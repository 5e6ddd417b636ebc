// Package scheme is the one runtime.Scheme of kube2fa's binaries and tests: the built-in kinds and kube2fa's.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Scheme knows the built-in kinds and kube2fa's.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(v1alpha1.AddToScheme(Scheme))
}
