{{/* Names are fixed by component so the plain manifests, the docs and the webhook kubeconfig agree. */}}
{{- define "credtrail.agent.name" -}}{{ .Release.Name }}-agent{{- end -}}
{{- define "credtrail.aggregator.name" -}}{{ .Release.Name }}-aggregator{{- end -}}

{{/* Labels of objects that belong to no one component. */}}
{{- define "credtrail.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "credtrail.baseLabels" . }}
{{- end -}}

{{- define "credtrail.baseLabels" -}}
app.kubernetes.io/part-of: credtrail
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "credtrail.agent.selector" -}}
app.kubernetes.io/name: credtrail-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "credtrail.aggregator.selector" -}}
app.kubernetes.io/name: credtrail-aggregator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "credtrail.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* The in-cluster address agents dial. */}}
{{- define "credtrail.aggregator.agentURL" -}}
https://{{ include "credtrail.aggregator.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.aggregator.ports.agents }}
{{- end -}}

{{/* The issuer that signs the leaf certificates. */}}
{{- define "credtrail.issuerRef" -}}
{{- if .Values.tls.certManager.issuerRef.name }}
name: {{ .Values.tls.certManager.issuerRef.name }}
kind: {{ .Values.tls.certManager.issuerRef.kind | default "Issuer" }}
{{- else }}
name: {{ .Release.Name }}-ca
kind: Issuer
{{- end }}
group: cert-manager.io
{{- end -}}
