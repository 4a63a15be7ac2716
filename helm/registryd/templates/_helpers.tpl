{{/* Names and labels. */}}
{{- define "registryd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "registryd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "registryd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registryd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "registryd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "registryd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "registryd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registryd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "registryd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The name of the Secret the chart makes (HTTP secret, storage keys, htpasswd). */}}
{{- define "registryd.secretName" -}}
{{- include "registryd.fullname" . }}
{{- end }}

{{/* "true" when more than one pod may run at once. */}}
{{- define "registryd.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Render-time checks: each fails with a message naming the values to change. */}}
{{- define "registryd.validate" -}}
{{- $multi := include "registryd.multiReplica" . }}
{{- $s := .Values.storage }}
{{- if and $multi (eq $s.backend "filesystem") }}
{{- if not $s.filesystem.persistence.enabled }}
{{- fail "storage.filesystem.persistence.enabled=false (an emptyDir per pod) cannot serve replicaCount > 1 or autoscaling: each pod would see different data. Use a shared backend (s3, gcs, azure) or a ReadWriteMany volume." }}
{{- end }}
{{- if ne $s.filesystem.persistence.accessMode "ReadWriteMany" }}
{{- fail (printf "storage.filesystem.persistence.accessMode=%s cannot be shared by replicaCount > 1 or autoscaling: use a ReadWriteMany volume (accessMode: ReadWriteMany; with existingClaim, the claim's mode) or a shared backend (s3, gcs, azure)" $s.filesystem.persistence.accessMode) }}
{{- end }}
{{- end }}
{{- $sd := .Values.shutdown }}
{{- $total := add $sd.preStopSeconds $sd.drainDelaySeconds $sd.drainTimeoutSeconds }}
{{- if ge (int $total) (int $sd.terminationGracePeriodSeconds) }}
{{- fail (printf "shutdown: preStopSeconds (%d) + drainDelaySeconds (%d) + drainTimeoutSeconds (%d) = %d must be below terminationGracePeriodSeconds (%d), or the kubelet kills in-flight uploads" (int $sd.preStopSeconds) (int $sd.drainDelaySeconds) (int $sd.drainTimeoutSeconds) (int $total) (int $sd.terminationGracePeriodSeconds)) }}
{{- end }}
{{- $c := .Values.credentials }}
{{- $keys := or $c.existingSecret $c.s3.accessKey $c.s3.secretKey $c.gcs.credentialsJSON $c.azure.accountKey }}
{{- if and .Values.cloudIdentity.provider $keys }}
{{- fail "cloudIdentity.provider is set together with credentials: use one or the other (key-less identity carries no keys)" }}
{{- end }}
{{- if and (eq $s.backend "s3") (not $c.existingSecret) (ne (empty $c.s3.accessKey) (empty $c.s3.secretKey)) }}
{{- fail "credentials.s3: set both accessKey and secretKey, or neither" }}
{{- end }}
{{- if and .Values.auth.htpasswd.enabled .Values.auth.token.enabled }}
{{- fail "auth: enable htpasswd or token, not both" }}
{{- end }}
{{- if and .Values.auth.htpasswd.enabled (not .Values.auth.htpasswd.existingSecret) (not .Values.auth.htpasswd.users) }}
{{- fail "auth.htpasswd.enabled needs auth.htpasswd.existingSecret or at least one entry in auth.htpasswd.users" }}
{{- end }}
{{- if and .Values.auth.token.enabled (not .Values.auth.token.existingSecret) }}
{{- fail "auth.token.enabled needs auth.token.existingSecret (the issuer's rootcertbundle and/or jwks)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret, e.g. a cert-manager Certificate's secretName)" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs (the Gateway to attach to)" }}
{{- end }}
{{- end }}

{{/*
The HTTP secret value the chart's Secret holds, or "" when httpSecret.existingSecret is used.
Explicit value, else the value already in the release's Secret (kept across upgrades), else a
new random one, which with several replicas is only allowed when the render can see the cluster
(so that the next render finds it again).
*/}}
{{- define "registryd.httpSecretValue" -}}
{{- if not .Values.httpSecret.existingSecret }}
{{- if .Values.httpSecret.value }}
{{- .Values.httpSecret.value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "registryd.secretName" .) }}
{{- if and $existing (hasKey ($existing.data | default dict) "http-secret") }}
{{- index $existing.data "http-secret" | b64dec }}
{{- else }}
{{- if include "registryd.multiReplica" . }}
{{- /* The release's namespace may not exist yet (--create-namespace creates it after the
     render), "default" always does: either seen means the cluster is. */}}
{{- $ns := or (lookup "v1" "Namespace" "" .Release.Namespace) (lookup "v1" "Namespace" "" "default") }}
{{- if not $ns }}
{{- fail "httpSecret: replicaCount > 1 or autoscaling needs one HTTP secret shared by every pod and kept across renders, and this render cannot see the cluster (helm template, --dry-run, a GitOps tool) to keep a generated one. Set httpSecret.existingSecret (a Secret you manage) or httpSecret.value." }}
{{- end }}
{{- end }}
{{- randAlphaNum 64 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Copies the set entries of src into dst: null and "" are left out, false and 0 are kept. */}}
{{- define "registryd.copySet" -}}
{{- $dst := index . 0 }}
{{- range $k, $v := index . 1 }}
{{- if not (or (kindIs "invalid" $v) (and (kindIs "string" $v) (eq $v ""))) }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* The registry's config.yml as a YAML document (no secrets: those come from the environment). */}}
{{- define "registryd.config" -}}
{{- $v := .Values }}
{{- $http := dict "addr" (printf ":%d" (int $v.service.port)) "draintimeout" (printf "%ds" (int $v.shutdown.drainTimeoutSeconds)) "debug" (dict "addr" (printf ":%d" (int $v.metrics.port))) }}
{{- if $v.shutdown.drainDelaySeconds }}
{{- $_ := set $http "draindelay" (printf "%ds" (int $v.shutdown.drainDelaySeconds)) }}
{{- end }}
{{- if $v.http.host }}
{{- $_ := set $http "host" $v.http.host }}
{{- end }}
{{- if $v.http.relativeurls }}
{{- $_ := set $http "relativeurls" true }}
{{- end }}
{{- if $v.tls.enabled }}
{{- $tls := dict "certificate" "/etc/registryd/tls/tls.crt" "key" "/etc/registryd/tls/tls.key" "minimumtls" $v.tls.minimumTLS }}
{{- if $v.tls.clientCASecret }}
{{- $_ := set $tls "clientcas" (list "/etc/registryd/tls-client-ca/ca.crt") }}
{{- end }}
{{- $_ := set $http "tls" $tls }}
{{- end }}
{{- $backend := dict }}
{{- if eq $v.storage.backend "filesystem" }}
{{- $_ := set $backend "rootdirectory" $v.storage.filesystem.rootdirectory }}
{{- else }}
{{- include "registryd.copySet" (list $backend (index $v.storage $v.storage.backend)) }}
{{- end }}
{{- $storage := dict $v.storage.backend $backend "delete" (dict "enabled" $v.storage.delete.enabled) "redirect" (dict "enable" $v.storage.redirect.enable) "maintenance" (dict "readonly" (dict "enabled" $v.storage.maintenance.readonly.enabled) "uploadpurging" (deepCopy $v.storage.maintenance.uploadpurging)) }}
{{- $cfg := dict "version" "0.1" "log" (dict "level" $v.log.level "formatter" $v.log.formatter) "http" $http "storage" $storage }}
{{- if $v.auth.htpasswd.enabled }}
{{- $_ := set $cfg "auth" (dict "htpasswd" (dict "realm" $v.auth.htpasswd.realm "path" "/etc/registryd/auth/htpasswd")) }}
{{- else if $v.auth.token.enabled }}
{{- $t := dict }}
{{- include "registryd.copySet" (list $t (dict "realm" $v.auth.token.realm "service" $v.auth.token.service "issuer" $v.auth.token.issuer)) }}
{{- if $v.auth.token.rootCertBundleKey }}
{{- $_ := set $t "rootcertbundle" (printf "/etc/registryd/auth/%s" $v.auth.token.rootCertBundleKey) }}
{{- end }}
{{- if $v.auth.token.jwksKey }}
{{- $_ := set $t "jwks" (printf "/etc/registryd/auth/%s" $v.auth.token.jwksKey) }}
{{- end }}
{{- $_ := set $cfg "auth" (dict "token" $t) }}
{{- end }}
{{- if and $v.auth.access (or $v.auth.htpasswd.enabled $v.auth.token.enabled) }}
{{- $_ := set $cfg.auth "access" $v.auth.access }}
{{- end }}
{{- $merged := mustMergeOverwrite $cfg (deepCopy $v.config) }}
{{- toYaml $merged }}
{{- end }}

{{/* Environment variables with secrets, each from a Secret. */}}
{{- define "registryd.secretEnv" -}}
{{- $own := include "registryd.secretName" . }}
- name: REGISTRY_HTTP_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ default $own .Values.httpSecret.existingSecret }}
      key: {{ ternary .Values.httpSecret.existingSecretKey "http-secret" (not (empty .Values.httpSecret.existingSecret)) }}
{{- $c := .Values.credentials }}
{{- $sec := default $own $c.existingSecret }}
{{- $b := .Values.storage.backend }}
{{- if and (eq $b "s3") (or $c.existingSecret $c.s3.accessKey) }}
- name: REGISTRY_STORAGE_S3_ACCESSKEY
  valueFrom:
    secretKeyRef: {name: {{ $sec }}, key: s3-accesskey}
- name: REGISTRY_STORAGE_S3_SECRETKEY
  valueFrom:
    secretKeyRef: {name: {{ $sec }}, key: s3-secretkey}
{{- if $c.existingSecret }}
- name: REGISTRY_STORAGE_S3_SESSIONTOKEN
  valueFrom:
    secretKeyRef: {name: {{ $sec }}, key: s3-sessiontoken, optional: true}
{{- end }}
{{- end }}
{{- if and (eq $b "gcs") (or $c.existingSecret $c.gcs.credentialsJSON) }}
- name: REGISTRY_STORAGE_GCS_CREDENTIALS
  valueFrom:
    secretKeyRef: {name: {{ $sec }}, key: gcs-credentials}
{{- end }}
{{- if and (eq $b "azure") (or $c.existingSecret $c.azure.accountKey) }}
- name: REGISTRY_STORAGE_AZURE_ACCOUNTKEY
  valueFrom:
    secretKeyRef: {name: {{ $sec }}, key: azure-accountkey}
{{- end }}
{{- end }}

{{/*
The data of the chart's own Secret, as YAML of plain strings: http-secret, storage keys,
htpasswd. Computed once per render (random parts must agree between the Secret and the checksum
annotation) and memoized in .Values. htpasswd lines are salted, so the previous ones are kept
while auth.htpasswd.users is unchanged (htpasswd-users-sha256 records which users they hash),
and an unchanged release does not roll its pods.
*/}}
{{- define "registryd.secretData" -}}
{{- if not (hasKey .Values "__registrydSecretData") }}
{{- $d := dict }}
{{- $http := include "registryd.httpSecretValue" . }}
{{- if $http }}
{{- $_ := set $d "http-secret" $http }}
{{- end }}
{{- $c := .Values.credentials }}
{{- if not $c.existingSecret }}
{{- if $c.s3.accessKey }}
{{- $_ := set $d "s3-accesskey" $c.s3.accessKey }}
{{- $_ := set $d "s3-secretkey" $c.s3.secretKey }}
{{- end }}
{{- if $c.gcs.credentialsJSON }}
{{- $_ := set $d "gcs-credentials" $c.gcs.credentialsJSON }}
{{- end }}
{{- if $c.azure.accountKey }}
{{- $_ := set $d "azure-accountkey" $c.azure.accountKey }}
{{- end }}
{{- end }}
{{- $h := .Values.auth.htpasswd }}
{{- if and $h.enabled (not $h.existingSecret) }}
{{- $fp := sha256sum (printf "%s\n%s" $http (toJson $h.users)) }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "registryd.secretName" .) }}
{{- $old := $existing.data | default dict }}
{{- if and (hasKey $old "htpasswd") (eq (index $old "htpasswd-users-sha256" | default "" | b64dec) $fp) }}
{{- $_ := set $d "htpasswd" (index $old "htpasswd" | b64dec) }}
{{- else }}
{{- $lines := list }}
{{- range $h.users }}
{{- $lines = append $lines (htpasswd .username .password) }}
{{- end }}
{{- $_ := set $d "htpasswd" (printf "%s\n" (join "\n" $lines)) }}
{{- end }}
{{- $_ := set $d "htpasswd-users-sha256" $fp }}
{{- end }}
{{- $_ := set .Values "__registrydSecretData" $d }}
{{- end }}
{{- toYaml (index .Values "__registrydSecretData") }}
{{- end }}

{{/* Whether the pod mounts its ServiceAccount token. */}}
{{- define "registryd.automountToken" -}}
{{- if kindIs "invalid" .Values.serviceAccount.automountToken }}
{{- ternary "true" "false" (not (empty .Values.cloudIdentity.provider)) }}
{{- else }}
{{- .Values.serviceAccount.automountToken }}
{{- end }}
{{- end }}

{{/*
"true" when the helm test pod can pass: tests are on, it has credentials whenever auth is on
(tests.credentialsSecret, or the first of auth.htpasswd.users), and a client certificate
whenever mutual TLS is on (tests.clientCertSecret). Else empty, and NOTES says why.
*/}}
{{- define "registryd.testRunnable" -}}
{{- $a := .Values.auth }}
{{- $t := .Values.tests }}
{{- $needCreds := or $a.htpasswd.enabled $a.token.enabled }}
{{- $haveCreds := or $t.credentialsSecret (and $a.htpasswd.enabled $a.htpasswd.users (not $a.token.enabled)) }}
{{- $needCert := and .Values.tls.enabled .Values.tls.clientCASecret }}
{{- if and $t.enabled (or (not $needCreds) $haveCreds) (or (not $needCert) $t.clientCertSecret) }}true{{- end }}
{{- end }}
