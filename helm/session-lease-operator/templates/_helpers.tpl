{{/* Names and labels of every object of the chart. */}}

{{- define "slo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: "<release>-<chart>", or the release name alone when it already contains the
chart name. Objects of one kind get this name, with a suffix where a release has several.
*/}}
{{- define "slo.fullname" -}}
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

{{- define "slo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slo.labels" -}}
helm.sh/chart: {{ include "slo.chart" . }}
{{ include "slo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: session-lease-operator
{{- end }}

{{- define "slo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the apiserver gives the operator's ServiceAccount. */}}
{{- define "slo.operatorUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "slo.serviceAccountName" . }}
{{- end }}

{{- define "slo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "slo.apiServiceName" -}}
{{- printf "%s-api" (include "slo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slo.metricsServiceName" -}}
{{- printf "%s-metrics" (include "slo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slo.apiServicePort" -}}
{{- if .Values.service.port }}{{ .Values.service.port }}{{ else if .Values.tls.enabled }}8443{{ else }}8080{{ end }}
{{- end }}

{{- define "slo.apiScheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{- define "slo.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "slo.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "slo.caConfigMapName" -}}
{{- printf "%s-ca" (include "slo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The DNS names the heartbeat API answers to inside the cluster. */}}
{{- define "slo.apiDnsNames" -}}
{{- $service := include "slo.apiServiceName" . }}
{{- $names := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) }}
{{- concat $names .Values.tls.extraDnsNames | toJson }}
{{- end }}
