{{/* The labels of every object: the name kube2fa gives its objects, and Helm's. */}}
{{- define "kube2fa.labels" -}}
app.kubernetes.io/name: kube2fa
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Namespaced RBAC needs the namespace to watch. */}}
{{- define "kube2fa.watchNamespace" -}}
{{- if eq .Values.rbac.scope "Namespaced" -}}
{{- required "rbac.watchNamespace is required when rbac.scope is Namespaced" .Values.rbac.watchNamespace -}}
{{- end -}}
{{- end -}}

{{/* The manager's image, which the injected verifiers run too. */}}
{{- define "kube2fa.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
