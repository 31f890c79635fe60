{{/* The release's resource names: the release name, with the chart's unless it already contains it. */}}
{{- define "tern.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tern.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tern.labels" -}}
{{ include "tern.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The name requests use: servedModelName, else the model value. */}}
{{- define "tern.servedModelName" -}}
{{- default .Values.model .Values.servedModelName -}}
{{- end -}}

{{/* Whether the model is a file (a path) rather than a catalog alias to pull. */}}
{{- define "tern.modelIsFile" -}}
{{- if or (contains "/" .Values.model) (hasSuffix ".gguf" .Values.model) -}}true{{- end -}}
{{- end -}}
