{{/*
Names, labels and the rendered configuration file, shared by every template.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "aslora.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The fully qualified name of this release's objects (at most 63 characters). */}}
{{- define "aslora.fullname" -}}
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

{{/* The role this release runs: coordinator or silo. */}}
{{- define "aslora.role" -}}
{{- .Values.role }}
{{- end }}

{{/* Labels that select this release's pods; they never change across upgrades. */}}
{{- define "aslora.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aslora.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "aslora.role" . }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "aslora.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aslora.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: aslora
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The service account the pod runs as. */}}
{{- define "aslora.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aslora.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The container image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "aslora.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/* The config file's name inside /etc/aslora: coordinator.toml or silo.toml. */}}
{{- define "aslora.configFile" -}}
{{- printf "%s.toml" .Values.role }}
{{- end }}

{{/* The name of the metrics Service (a ServiceMonitor selects it by its labels). */}}
{{- define "aslora.metricsServiceName" -}}
{{- printf "%s-metrics" (include "aslora.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Rewrite, in place, every whole float64 in a map (nested maps and lists included) as an int64.
Helm reads numbers from values files as float64, and toToml would print `rounds = 20.0`.
*/}}
{{- define "aslora.wholeNumbersToInts" -}}
{{- $map := . }}
{{- range $key, $value := $map }}
{{- if kindIs "float64" $value }}
{{- if eq $value (float64 (int64 $value)) }}
{{- $_ := set $map $key (int64 $value) }}
{{- end }}
{{- else if kindIs "map" $value }}
{{- include "aslora.wholeNumbersToInts" $value }}
{{- else if kindIs "slice" $value }}
{{- $items := list }}
{{- range $item := $value }}
{{- $box := dict "item" $item }}
{{- include "aslora.wholeNumbersToInts" $box }}
{{- $items = append $items $box.item }}
{{- end }}
{{- $_ := set $map $key $items }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The configuration file: the free-form `config` map, with the keys the chart owns (mounted TLS paths,
listen addresses and, for a silo, the coordinator's address) written over it.
*/}}
{{- define "aslora.configToml" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $bind := .Values.bindAddress }}
{{- $owned := dict
  "tls" (dict
    "ca_cert" (printf "%s/ca.crt" .Values.tls.mountPath)
    "cert" (printf "%s/tls.crt" .Values.tls.mountPath)
    "key" (printf "%s/tls.key" .Values.tls.mountPath))
  "health" (dict "listen" (printf "%s:%d" $bind (int .Values.ports.health)))
  "metrics" (dict "listen" (printf "%s:%d" $bind (int .Values.ports.metrics)))
}}
{{- if eq .Values.role "coordinator" }}
{{- $_ := set $owned "server" (dict "listen" (printf "%s:%d" $bind (int .Values.ports.grpc))) }}
{{- if .Values.coordinator.revocationList.configMap }}
{{- $_ := set $owned "security" (dict "revocation_list" (include "aslora.revocationListPath" .)) }}
{{- end }}
{{- else }}
{{- $coordinator := dict "address" (printf "%s:%d" .Values.silo.coordinator.host (int .Values.silo.coordinator.port)) }}
{{- with .Values.silo.coordinator.tlsServerName }}
{{- $_ := set $coordinator "tls_server_name" . }}
{{- end }}
{{- $_ := set $owned "coordinator" $coordinator }}
{{- if gt (int .Values.silo.gpu.count) 0 }}
{{- /* One training rank per GPU the pod gets: the GPU count is the silo's [training] devices. */}}
{{- $_ := set $owned "training" (dict "devices" (int .Values.silo.gpu.count)) }}
{{- end }}
{{- end }}
{{- $config = mustMergeOverwrite $config $owned }}
{{- include "aslora.wholeNumbersToInts" $config }}
{{- toToml $config }}
{{- end }}

{{/* Where the coordinator reads the CA's deny list, mounted from coordinator.revocationList.configMap. */}}
{{- define "aslora.revocationListPath" -}}
/etc/aslora/revocation/revoked.json
{{- end }}
