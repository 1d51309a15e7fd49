{{/* Names are fixed by component so the plain manifests, the docs and the webhook kubeconfig agree. */}}
{{- define "credtrail.agent.name" -}}{{ .Release.Name }}-agent{{- end -}}
{{- define "credtrail.aggregator.name" -}}{{ .Release.Name }}-aggregator{{- end -}}

{{/* The chart label's value: name-version. */}}
{{- define "credtrail.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The standard labels (app.kubernetes.io/*, helm.sh/chart) and commonLabels, on every object.
Call with (dict "root" $ "component" "rbac"); `name` defaults to "credtrail". The agent's and
the aggregator's objects keep their names (credtrail-agent, credtrail-aggregator): those are in
the immutable selectors of the DaemonSet and the Deployment. */}}
{{- define "credtrail.labels" -}}
{{- $r := .root -}}
app.kubernetes.io/name: {{ .name | default "credtrail" }}
app.kubernetes.io/instance: {{ $r.Release.Name }}
app.kubernetes.io/version: {{ $r.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: credtrail
app.kubernetes.io/managed-by: {{ $r.Release.Service }}
helm.sh/chart: {{ include "credtrail.chart" $r }}
{{- with $r.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "credtrail.agent.labels" -}}
{{ include "credtrail.labels" (dict "root" . "component" "agent" "name" "credtrail-agent") }}
{{- end -}}

{{- define "credtrail.aggregator.labels" -}}
{{ include "credtrail.labels" (dict "root" . "component" "aggregator" "name" "credtrail-aggregator") }}
{{- end -}}

{{- define "credtrail.agent.selector" -}}
app.kubernetes.io/name: credtrail-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "credtrail.aggregator.selector" -}}
app.kubernetes.io/name: credtrail-aggregator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* An image reference: repository@digest when image.digest is set (the digest wins over the
tag), otherwise repository:tag (tag defaults to the chart's appVersion). */}}
{{- define "credtrail.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
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

{{/* A volume source for one public file (a JWKS): {kind: ConfigMap|Secret, name, key}. */}}
{{- define "credtrail.fileSource" -}}
{{- $name := required (printf "%s.name is required" .what) .src.name -}}
{{- if eq .src.kind "Secret" -}}
secret:
  secretName: {{ $name }}
  items:
    - key: {{ .src.key }}
      path: {{ .src.key }}
  defaultMode: 0440
{{- else if eq .src.kind "ConfigMap" -}}
configMap:
  name: {{ $name }}
  items:
    - key: {{ .src.key }}
      path: {{ .src.key }}
{{- else -}}
{{- fail (printf "%s.kind must be ConfigMap or Secret, not %q" .what .src.kind) -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy peers: the pods matching .podSelector in each namespace of .namespaces, by
name (the kubernetes.io/metadata.name label Kubernetes sets on every namespace). */}}
{{- define "credtrail.namespacePeers" -}}
{{- $sel := .podSelector | default dict -}}
{{- range .namespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
  podSelector:
    {{- toYaml $sel | nindent 4 }}
{{- end }}
{{- end -}}
