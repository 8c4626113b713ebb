{{/*
Names, labels and the per-module values every template uses.
A "module context" is (dict "root" $ "name" "identity" "m" <merged module values>), built by
carerecord.context.
*/}}

{{/* The four modules, data access first. */}}
{{- define "carerecord.moduleNames" -}}
access identity records consent
{{- end -}}

{{- define "carerecord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carerecord.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Deep merge: "over" wins key by key, maps merged recursively; false and 0 override too. */}}
{{- define "carerecord.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- if and (kindIs "map" $value) (kindIs "map" (index $out $key)) -}}
{{- $_ := set $out $key (include "carerecord.deepMerge" (dict "base" (index $out $key) "over" $value) | fromYaml) -}}
{{- else if kindIs "invalid" $value -}}
{{- $_ := unset $out $key -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* A module's values: moduleDefaults under the module's own block. Args: root, name. */}}
{{- define "carerecord.context" -}}
{{- $own := index .root.Values .name | default dict -}}
{{- $merged := include "carerecord.deepMerge" (dict "base" .root.Values.moduleDefaults "over" $own) | fromYaml -}}
{{- toYaml (dict "name" .name "m" $merged) -}}
{{- end -}}

{{/* Resource name of a module: <fullname>-<module>. Args: root, name. */}}
{{- define "carerecord.moduleFullname" -}}
{{- printf "%s-%s" (include "carerecord.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "carerecord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. Args: root, name (module, optional). */}}
{{- define "carerecord.labels" -}}
helm.sh/chart: {{ include "carerecord.chart" .root }}
{{ include "carerecord.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: carerecord
{{- end -}}

{{/* Labels that select a module's pods. Args: root, name. */}}
{{- define "carerecord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carerecord.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}
{{- end -}}

{{- define "carerecord.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "carerecord.serviceAccountName" -}}
{{- if .m.serviceAccount.create -}}
{{- default (include "carerecord.moduleFullname" .) .m.serviceAccount.name -}}
{{- else -}}
{{- default "default" .m.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the database URL and token key: existing or the chart's. Args: module context. */}}
{{- define "carerecord.secretName" -}}
{{- .m.secrets.existingSecret | default (include "carerecord.moduleFullname" .) -}}
{{- end -}}

{{/* "true" when the module has no database configured and runs on SQLite in its emptyDir. */}}
{{- define "carerecord.sqlite" -}}
{{- if and (not .m.secrets.existingSecret) (not .m.database.url) -}}true{{- end -}}
{{- end -}}

{{- define "carerecord.tlsSecretName" -}}
{{- $existing := index (.root.Values.tls.existingSecrets | default dict) .name -}}
{{- if $existing -}}
{{- $existing -}}
{{- else if .root.Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "carerecord.moduleFullname" .) -}}
{{- else -}}
{{- fail (printf "tls.enabled: set tls.existingSecrets.%s or tls.certManager.enabled" .name) -}}
{{- end -}}
{{- end -}}

{{/*
Where data access reaches a module: the in-release Service, or the external endpoint of another
supplier's implementation. Args: root, name.
*/}}
{{- define "carerecord.endpoint" -}}
{{- $c := include "carerecord.context" . | fromYaml -}}
{{- $m := $c.m -}}
{{- if $m.enabled -}}
{{- printf "%s://%s:%d" (ternary "https" "http" .root.Values.tls.enabled) (include "carerecord.moduleFullname" .) (int $m.port) -}}
{{- else if not $m.external.endpoint -}}
{{- fail (printf "%s.enabled is false: set %s.external.endpoint to the implementation data access should call" .name .name) -}}
{{- else if contains "://" $m.external.endpoint -}}
{{- $m.external.endpoint -}}
{{- else -}}
{{- printf "%s://%s" (ternary "https" "http" $m.external.tls) $m.external.endpoint -}}
{{- end -}}
{{- end -}}

{{/* The port of an endpoint URL (explicit, or 443/80 from the scheme). Arg: the URL. */}}
{{- define "carerecord.endpointPort" -}}
{{- $url := urlParse . -}}
{{- $host := $url.host -}}
{{- if regexMatch ":[0-9]+$" $host -}}
{{- regexFind "[0-9]+$" $host -}}
{{- else -}}
{{- ternary "443" "80" (eq $url.scheme "https") -}}
{{- end -}}
{{- end -}}

{{/* The port the probes use: the gRPC port, or the plaintext health port with TLS on. */}}
{{- define "carerecord.probePort" -}}
{{- if .root.Values.tls.enabled -}}{{ .root.Values.tls.healthPort }}{{- else -}}{{ .m.port }}{{- end -}}
{{- end -}}

{{/* envFrom + env of a module's containers: its ConfigMap, then its secrets. Args: module context. */}}
{{- define "carerecord.podEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "carerecord.moduleFullname" . }}
env:
  - name: CARERECORD_TOKEN_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "carerecord.secretName" . }}
        key: {{ .m.secrets.tokenSecretKey }}
  {{- if not (include "carerecord.sqlite" .) }}
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "carerecord.secretName" . }}
        key: {{ .m.secrets.databaseUrlKey }}
  {{- else }}
  - name: DATABASE_URL
    value: {{ printf "sqlite:///data/%s.db" .name | quote }}
  {{- end }}
{{- end -}}
