{{- define "bookstore.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bookstore.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "catalog") */}}
{{- define "bookstore.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bookstore.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "bookstore.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "bookstore.fullname" .)) -}}
{{- end -}}

{{/* One secret key as an environment variable: (dict "root" $ "name" "AMQP_URI") */}}
{{- define "bookstore.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "bookstore.secretName" .root }}
      key: {{ .name }}
{{- end -}}

{{- define "bookstore.databaseUrl" -}}
{{- $pg := .root.Values.postgresql -}}
{{- printf "postgresql+psycopg2://%s:%s@%s:%v/%s%s" $pg.username $pg.password $pg.host $pg.port $pg.databasePrefix .service -}}
{{- end -}}

{{- define "bookstore.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* nameko and the gateway write nothing but /tmp (eventlet, uvicorn). */}}
{{- define "bookstore.tmpVolume" -}}
volumes:
  - name: tmp
    emptyDir: {}
{{- end -}}
