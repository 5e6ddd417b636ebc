# Build the manager and verifier binaries.
# The builder runs on the build machine's platform and cross-compiles (CGO off), so a multi-platform
# build (docker buildx build --platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Download the modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

# The release: the manager injects verifiers of the same image tag unless told otherwise (--verifier-image).
ARG VERSION=latest
ENV CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH}
RUN go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /manager ./cmd/manager && \
    go build -trimpath -ldflags="-s -w" -o /verifier ./cmd/verifier

# One image for both: the manager Deployment runs /manager, the verifier sidecar runs /verifier.
# distroless/static has no shell and runs as an unprivileged user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /manager /verifier /
USER 65532:65532

ENTRYPOINT ["/manager"]
