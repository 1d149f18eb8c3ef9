{{/* The name of every object: the release name, or "taskpod" for a release named taskpod. */}}
{{- define "taskpod.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "taskpod.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "taskpod.labels" -}}
{{ include "taskpod.selectorLabels" . }}
app.kubernetes.io/part-of: taskpod
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* taskpod.yaml: the values' config with the release namespace and the cache volume. */}}
{{- define "taskpod.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "namespace" .Release.Namespace -}}
{{- if not (hasKey $config "cacheDir") -}}
{{- $_ := set $config "cacheDir" "/var/cache/taskpod" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
