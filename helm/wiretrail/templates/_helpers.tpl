{{/* Chart name, possibly overridden. */}}
{{- define "wiretrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-wiretrail, or the release name when it already contains the chart name. */}}
{{- define "wiretrail.fullname" -}}
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

{{- define "wiretrail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wiretrail.labels" -}}
helm.sh/chart: {{ include "wiretrail.chart" . }}
app.kubernetes.io/name: {{ include "wiretrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wiretrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wiretrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wiretrail.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "wiretrail.agentServiceAccount" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-agent" (include "wiretrail.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret with the S3 keys: the user's, or the one this chart writes. */}}
{{- define "wiretrail.s3Secret" -}}
{{- if .Values.server.s3.existingSecret }}
{{- .Values.server.s3.existingSecret }}
{{- else if .Values.server.s3.accessKeyId }}
{{- printf "%s-s3" (include "wiretrail.fullname" .) }}
{{- end }}
{{- end }}
