{{/* Common labels. */}}
{{- define "medic.labels" -}}
app.kubernetes.io/name: medic
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{/* The object name prefix: the release name, or "medic" for a release named medic. */}}
{{- define "medic.fullname" -}}
{{- if contains "medic" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-medic" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* medic.yaml: config.inline, else the shipped example files/<config.example>.yaml. */}}
{{- define "medic.configText" -}}
{{- if .Values.config.inline -}}
{{- .Values.config.inline -}}
{{- else -}}
{{- $f := printf "files/%s.yaml" .Values.config.example -}}
{{- $t := .Files.Get $f -}}
{{- if not $t -}}
{{- fail (printf "config.example %q: the chart has no %s (shipped: spire-agent, kubearmor-relay); or set config.inline" .Values.config.example $f) -}}
{{- end -}}
{{- /* fleet.*: the defaults of the example's ${MEDIC_FLEET_...} expansions (the env still wins). */ -}}
{{- $t = replace "${MEDIC_FLEET_PROMETHEUS_URL:-}" (printf "${MEDIC_FLEET_PROMETHEUS_URL:-%s}" .Values.fleet.prometheusURL) $t -}}
{{- $t = replace "${MEDIC_FLEET_MAX_SHARE:-0.3}" (printf "${MEDIC_FLEET_MAX_SHARE:-%v}" .Values.fleet.maxShare) $t -}}
{{- $t -}}
{{- end -}}
{{- end }}

{{/*
What the configuration's actions need from the API server, as a YAML map of
booleans: podDelete (restart mode pod), evict (mode pod with evict: true),
rollout (restart mode rollout), fleet (a fleet limit on any action).
*/}}
{{- define "medic.needs" -}}
{{- $cfg := include "medic.configText" . | fromYaml -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "medic.yaml is not YAML: %s" (get $cfg "Error")) -}}
{{- end -}}
{{- $needs := dict "podDelete" false "evict" false "rollout" false "fleet" false -}}
{{- range $name, $a := (get $cfg "actions" | default dict) -}}
{{- $r := get $a "restart" | default dict -}}
{{- $mode := get $r "mode" | default "" | toString -}}
{{- if eq $mode "pod" -}}
{{- $_ := set $needs "podDelete" true -}}
{{- if get $r "evict" -}}{{- $_ := set $needs "evict" true -}}{{- end -}}
{{- end -}}
{{- if eq $mode "rollout" -}}{{- $_ := set $needs "rollout" true -}}{{- end -}}
{{- if get $a "fleet" -}}{{- $_ := set $needs "fleet" true -}}{{- end -}}
{{- end -}}
{{- toYaml $needs -}}
{{- end }}
