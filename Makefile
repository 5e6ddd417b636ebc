# kube2fa: two-factor authentication for applications on Kubernetes.

IMG ?= ghcr.io/kube2fa/kube2fa:latest
BIN := $(CURDIR)/bin
K8S_BIN := $(BIN)/k8s
# Control-plane binaries for the tests: $KUBEBUILDER_ASSETS when given, else built from source into bin/k8s.
K8S_ASSETS := $(or $(KUBEBUILDER_ASSETS),$(K8S_BIN))

CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM_VERSION ?= v4.3.1
HELM := $(BIN)/helm-$(HELM_VERSION)
# golangci-lint with the logcheck and kube-api-linter module plugins; versions pinned in its go.mod.
GOLANGCI_LINT_DIR := hack/tools/golangci-lint
GOLANGCI_LINT := $(BIN)/golangci-lint

GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs and RBAC under config/, and copy what the Helm chart shares with them.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/*.yaml charts/kube2fa/crds/
	cp config/rbac/role.yaml charts/kube2fa/files/manager-role.yaml
	cp config/rbac/verifier/role.yaml charts/kube2fa/files/verifier-role.yaml
	cp config/prometheus/kube2fa.rules.yaml charts/kube2fa/files/kube2fa.rules.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint with logcheck and kube-api-linter (see .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: control-plane
control-plane: ## Build etcd, kube-apiserver and kube-controller-manager from source into bin/k8s (once).
	hack/build-control-plane.sh $(K8S_BIN)

.PHONY: test
test: manifests generate fmt vet control-plane $(HELM) ## Run every test against the local control plane.
	KUBEBUILDER_ASSETS=$(K8S_ASSETS) go test $(GO_TEST_FLAGS) ./...

# Every fuzz target, by package. `make test` runs their seed corpora (and testdata/fuzz); `make fuzz` runs the
# fuzzer on each for FUZZTIME. None needs the control plane.
FUZZ_TARGETS := ./internal/enrollment:FuzzName ./internal/enrollment:FuzzValidUser \
	./internal/strictjson:FuzzUnmarshal ./internal/otp:FuzzProvisioningURI \
	./internal/render:FuzzParseOTPSecret ./internal/render:FuzzParseVerifierConfigMap \
	./internal/verifier:FuzzRequests
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s), one after the other.
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

.PHONY: bench
bench: build control-plane ## Measure kube2fa against the API server's own ceiling (BENCH_FLAGS="-n 10000" to scale).
	KUBEBUILDER_ASSETS=$(K8S_ASSETS) go run ./cmd/bench $(BENCH_FLAGS)

.PHONY: verify
verify: manifests generate fmt vet lint ## Regenerate everything, lint, and fail if the tree changed.
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "verify: the tree is dirty after regenerating; commit the result:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

##@ Build

.PHONY: build
# As the image builds them (Dockerfile), so that what runs here, and what `make bench` measures, is what ships.
GO_BUILD_FLAGS ?= -trimpath -ldflags="-s -w"

build: manifests generate fmt vet ## Build the manager, the verifier and the kubectl plugin (kubectl-2fa) into bin/.
	go build $(GO_BUILD_FLAGS) -o $(BIN)/manager ./cmd/manager
	go build $(GO_BUILD_FLAGS) -o $(BIN)/verifier ./cmd/verifier
	go build $(GO_BUILD_FLAGS) -o $(BIN)/kubectl-2fa ./cmd/kubectl-2fa

.PHONY: run
run: build $(if $(filter true,$(USE_EXISTING_CLUSTER)),,control-plane) ## Start the local control plane (or use the current cluster with USE_EXISTING_CLUSTER=true), install the CRDs, run the manager and a verifier, apply the samples.
	KUBEBUILDER_ASSETS=$(K8S_ASSETS) hack/run.sh

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(lastword $(subst :, ,$(IMG))) -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRDs (and every policy and enrollment) from the cluster.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy kube2fa with image IMG to the cluster of the current kubeconfig.
	cd config/manager && $(KUSTOMIZE) edit set image manager=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove kube2fa from the cluster.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $@

$(GOLANGCI_LINT): $(GOLANGCI_LINT_DIR)/go.mod $(GOLANGCI_LINT_DIR)/go.sum $(GOLANGCI_LINT_DIR)/main.go
	cd $(GOLANGCI_LINT_DIR) && go build -o $@ .

$(KUSTOMIZE):
	GOBIN=$(BIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(BIN)/kustomize $@

.PHONY: helm
helm: $(HELM) ## Build the pinned helm into bin/ (make test needs it for the chart's tests).
$(HELM):
	GOBIN=$(BIN) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/helm $@
