// Package controlplane starts the local control plane that kube2fa's tests, `make run` and the benchmark run
// on: a real etcd and kube-apiserver (through controller-runtime's envtest) built from source by
// hack/build-control-plane.sh, with kube2fa's CRDs installed, and optionally a real kube-controller-manager
// for garbage collection. It links no test code; internal/testenv adds the helpers tests share.
package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kube2fa/kube2fa/internal/scheme"
)

// Options choose what runs beside etcd and kube-apiserver.
type Options struct {
	// ControllerManager starts kube-controller-manager with the garbage collector and namespace controllers,
	// so that owner references and namespace deletion behave as in a real cluster.
	ControllerManager bool
	// StopTimeout bounds how long each control-plane process may take to stop gracefully before it is
	// killed (default 20s).
	StopTimeout time.Duration
	// DataDir keeps etcd's data there, across restarts; a fresh temporary directory when empty.
	DataDir string
	// Fsync makes etcd sync every write to disk, as a production etcd does. envtest turns it off by default
	// for speed; benchmarks turn it on.
	Fsync bool
	// ServiceAccountAdmission turns on the ServiceAccount admission plugin, which envtest turns off: a pod
	// then needs its ServiceAccount to exist, and gets its token mounted into every container, as in a real
	// cluster.
	ServiceAccountAdmission bool
	// APIServerFlags and EtcdFlags are more flags of kube-apiserver and etcd, name to value.
	APIServerFlags, EtcdFlags map[string]string
}

// Env is a running local control plane.
type Env struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client talks to the API server directly (no cache), for assertions.
	Client client.WithWatch
	// Kubeconfig is the path of a kubeconfig file for kubectl and for binaries under test.
	Kubeconfig string

	env *envtest.Environment
	dir string
	kcm *exec.Cmd
}

// RepoRoot returns the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns where the control-plane binaries are: $KUBEBUILDER_ASSETS, else bin/k8s.
func BinDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "k8s")
}

// Start starts etcd and kube-apiserver with the CRDs installed, and what opts asks for.
func Start(opts Options) (*Env, error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s not found in %s: run 'make control-plane' (or 'make test')", b, bin)
		}
	}
	e := &Env{env: &envtest.Environment{
		BinaryAssetsDirectory:   bin,
		CRDDirectoryPaths:       []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:   true,
		Scheme:                  scheme.Scheme,
		ControlPlaneStopTimeout: opts.StopTimeout,
	}}
	e.env.ControlPlane.Etcd = &envtest.Etcd{DataDir: opts.DataDir}
	if opts.ServiceAccountAdmission {
		e.env.ControlPlane.GetAPIServer().Configure().Set("disable-admission-plugins", "")
	}
	for name, value := range opts.APIServerFlags {
		e.env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	for name, value := range opts.EtcdFlags {
		e.env.ControlPlane.Etcd.Configure().Set(name, value)
	}
	if opts.Fsync {
		e.env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "false")
	}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	e.Config = cfg
	if e.dir, err = os.MkdirTemp("", "kube2fa-testenv-"); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if e.Client, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme.Scheme}); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if e.Kubeconfig, err = e.UserKubeconfig("kube2fa-admin", "system:masters"); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if opts.ControllerManager {
		if err := e.startControllerManager(bin); err != nil {
			return nil, errors.Join(err, e.Stop())
		}
	}
	return e, nil
}

func (e *Env) startControllerManager(bin string) error {
	e.kcm = exec.Command(filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+e.Kubeconfig,
		"--controllers=garbagecollector,namespace",
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	)
	log, err := os.Create(filepath.Join(e.dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	e.kcm.Stdout, e.kcm.Stderr = log, log
	if err := e.kcm.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	return nil
}

// Stop stops everything Start started.
func (e *Env) Stop() error {
	var errs []error
	if e.kcm != nil && e.kcm.Process != nil {
		_ = e.kcm.Process.Kill()
		_ = e.kcm.Wait()
	}
	if e.env != nil {
		errs = append(errs, e.env.Stop())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// EtcdURL is etcd's client URL, which also serves its /metrics.
func (e *Env) EtcdURL() string { return e.env.ControlPlane.Etcd.URL.String() }

// UserConfig returns a client configuration for a new user, in groups, with no permissions at all, to prove
// that the permissions a test grants (a Role from config/rbac, say) are enough.
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.Config(), nil
}

// UserKubeconfig is UserConfig written as a kubeconfig file, for a process to act as that user.
func (e *Env) UserKubeconfig(name string, groups ...string) (string, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", name, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, strings.ReplaceAll(name, ":", "_")+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// StopAPIServer stops kube-apiserver only (etcd keeps running), to test what clients do without it. A
// server that does not stop within Options.StopTimeout is killed, and that is reported as an error.
func (e *Env) StopAPIServer() error {
	return e.env.ControlPlane.APIServer.Stop()
}

// zapLevel is errors only, unless KUBE2FA_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("KUBE2FA_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}
