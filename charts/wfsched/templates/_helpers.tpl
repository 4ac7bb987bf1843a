{{/* Chart name, truncated to a DNS label. */}}
{{- define "wfsched.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified release name, truncated to a DNS label. */}}
{{- define "wfsched.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace too, so two releases never collide. */}}
{{- define "wfsched.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "wfsched.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wfsched.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wfsched.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wfsched.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wfsched.labels" -}}
helm.sh/chart: {{ include "wfsched.chart" . }}
{{ include "wfsched.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: scheduler
app.kubernetes.io/part-of: wfsched
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wfsched.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wfsched.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wfsched.leaseName" -}}
{{- default (include "wfsched.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "wfsched.memoryStoreName" -}}
{{- default (printf "%s-memory" (include "wfsched.fullname" .) | trunc 63 | trimSuffix "-") .Values.policies.memoryStoreConfigMap }}
{{- end }}

{{- define "wfsched.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the REST API token, empty when there is none. */}}
{{- define "wfsched.tokenSecretName" -}}
{{- if .Values.apiToken.existingSecret }}
{{- .Values.apiToken.existingSecret }}
{{- else if .Values.apiToken.create }}
{{- printf "%s-api-token" (include "wfsched.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Every scheduler name this release serves, the default one first. */}}
{{- define "wfsched.schedulerNames" -}}
{{- prepend .Values.scheduler.extraNames .Values.scheduler.name | uniq | toJson }}
{{- end }}

{{/* Checks values that the JSON schema cannot express. */}}
{{- define "wfsched.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElect) }}
{{- fail "replicaCount > 1 requires leaderElect: true (two active schedulers with one name race on every bind)" }}
{{- end }}
{{- if not (lt (float64 .Values.leaderElection.renewDeadlineSeconds) (float64 .Values.leaderElection.leaseDurationSeconds)) }}
{{- fail "leaderElection.renewDeadlineSeconds must be shorter than leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if not (lt (float64 .Values.leaderElection.retryPeriodSeconds) (float64 .Values.leaderElection.renewDeadlineSeconds)) }}
{{- fail "leaderElection.retryPeriodSeconds must be shorter than leaderElection.renewDeadlineSeconds" }}
{{- end }}
{{- if and .Values.policies.maxMemoryBytes (lt (float64 .Values.policies.maxMemoryBytes) (float64 .Values.policies.minMemoryBytes)) }}
{{- fail "policies.maxMemoryBytes must be >= policies.minMemoryBytes (or 0 for no cap)" }}
{{- end }}
{{- if and .Values.rest.enabled (eq (int .Values.rest.port) (int .Values.metrics.port)) }}
{{- fail "rest.port and metrics.port must differ" }}
{{- end }}
{{- end }}
