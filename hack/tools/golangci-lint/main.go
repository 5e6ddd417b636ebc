// Command golangci-lint is golangci-lint with the two linters kube2fa adds as module plugins: logcheck
// (sigs.k8s.io/logtools: structured, contextual logging as Kubernetes writes it) and kube-api-linter
// (sigs.k8s.io/kube-api-linter: the Kubernetes API conventions for api/). It is what `golangci-lint custom`
// would generate from a .custom-gcl.yml, written out because that command clones golangci-lint's source
// from GitHub, while this module builds from the Go module proxy alone. `make lint` builds it into bin/.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/golangci/golangci-lint/v2/pkg/commands"
	"github.com/golangci/golangci-lint/v2/pkg/exitcodes"

	// The module plugins; each registers itself with golangci-lint's plugin registry.
	_ "sigs.k8s.io/kube-api-linter"
	_ "sigs.k8s.io/logtools/logcheck/gclplugin"
)

func main() {
	info := commands.BuildInfo{Version: "custom", Commit: "?", Date: "(unknown)", GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/golangci/golangci-lint/v2" {
				info.Version = dep.Version + "-kube2fa"
			}
		}
	}
	if err := commands.Execute(info); err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "failed executing command with error %v\n", err)
		os.Exit(exitcodes.Failure)
	}
}
