# For people who build with Docker; the release image is built without a daemon by
# scripts/build-image.sh (internal/release), with the same contents.
#   docker build --build-arg VERSION=1.2.3 -t registryd:1.2.3 .
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/registryd ./cmd/registryd \
 && mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/tmp /out/rootfs/home/nonroot \
 && chmod 1777 /out/rootfs/tmp && chown 65532:65532 /out/rootfs/home/nonroot && chmod 700 /out/rootfs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/rootfs/etc/group \
 && printf 'hosts: files dns\n' > /out/rootfs/etc/nsswitch.conf \
 && cp /out/registryd /out/rootfs/registryd

FROM scratch
ARG VERSION=dev
COPY --from=build /out/rootfs/ /
LABEL org.opencontainers.image.title="registryd" \
      org.opencontainers.image.description="OCI Distribution v1.1 registry over object storage" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/registryd/registryd"
ENV PATH=/ SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 5000 5001
ENTRYPOINT ["/registryd"]
CMD ["serve"]
