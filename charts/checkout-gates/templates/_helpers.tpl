{{/* The release's full name, at most 63 characters. */}}
{{- define "checkout-gates.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "checkout-gates.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "checkout-gates.labels" -}}
{{ include "checkout-gates.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "checkout-gates.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "checkout-gates.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The user name the operator's requests carry: its ServiceAccount's. */}}
{{- define "checkout-gates.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "checkout-gates.serviceAccountName" .) -}}
{{- end -}}

{{- define "checkout-gates.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret names the operator may read (rbac.secrets.restrictToNames). */}}
{{- define "checkout-gates.secretNames" -}}
{{- concat (.Values.prometheus.credentialSecrets | default list) (.Values.paging.secrets | default list) | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* "true" when the replicas elect a leader (leaderElection.enabled: auto = more than one replica). */}}
{{- define "checkout-gates.leaderElection" -}}
{{- $enabled := toString .Values.leaderElection.enabled -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (gt (int .Values.replicas) 1)) -}}
true
{{- end -}}
{{- end -}}

{{- define "checkout-gates.leaseName" -}}
{{- default (printf "%s-leader" (include "checkout-gates.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}
