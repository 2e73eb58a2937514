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

{{/* The search service runs the image with the ML stack (the Dockerfile's `search`
target); everything else the lean one. (dict "root" $ "service" "search") */}}
{{- define "bookstore.serviceImage" -}}
{{- $image := .root.Values.image -}}
{{- if eq .service "search" -}}
{{ $image.searchRepository | default (printf "%s-search" $image.repository) }}:{{ $image.tag | default .root.Chart.AppVersion }}
{{- else -}}
{{ include "bookstore.image" .root }}
{{- end -}}
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

{{/* A service's database URL: through PgBouncer when it is enabled, unless "direct"
(the migration hook creates databases, which PgBouncer cannot). */}}
{{- define "bookstore.databaseUrl" -}}
{{- $pg := .root.Values.postgresql -}}
{{- $host := $pg.host -}}
{{- $port := $pg.port -}}
{{- if and .root.Values.pgbouncer.enabled (not .direct) -}}
{{- $host = printf "%s-pgbouncer" (include "bookstore.fullname" .root) -}}
{{- $port = .root.Values.pgbouncer.port -}}
{{- end -}}
{{- printf "postgresql+psycopg2://%s:%s@%s:%v/%s%s" $pg.username $pg.password $host $port $pg.databasePrefix .service -}}
{{- end -}}

{{/* The Secret key of the migration hook's URL for a service: the direct one when
PgBouncer is in front. */}}
{{- define "bookstore.migrateUrlKey" -}}
{{- if .root.Values.pgbouncer.enabled -}}
MIGRATE_{{ upper .service }}_DATABASE_URL
{{- else -}}
{{ upper .service }}_DATABASE_URL
{{- end -}}
{{- end -}}

{{- define "bookstore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "bookstore.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret keys a service's pods get: its secretEnv, and Stripe's keys for the
payment service when Stripe is the provider. (dict "root" $ "service" "payment") */}}
{{- define "bookstore.serviceSecrets" -}}
{{- $spec := index .root.Values.services .service -}}
{{- $keys := $spec.secretEnv | default list -}}
{{- if and (eq .service "payment") (eq .root.Values.config.PAYMENT_PROVIDER "stripe") -}}
{{- $keys = concat $keys (list "STRIPE_API_KEY" "STRIPE_WEBHOOK_SECRET") -}}
{{- end -}}
{{- toJson $keys -}}
{{- end -}}

{{/* Every Secret key some enabled service needs, as JSON. */}}
{{- define "bookstore.neededSecrets" -}}
{{- $needed := list -}}
{{- range $service, $spec := .Values.services -}}
{{- if $spec.enabled -}}
{{- $needed = concat $needed (include "bookstore.serviceSecrets" (dict "root" $ "service" $service) | fromJsonArray) -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $needed) -}}
{{- end -}}

{{/* A release left on defaults must not take fake payments: the provider is a choice,
and the mock is refused in production (the payment service refuses it too). */}}
{{- define "bookstore.checkPaymentProvider" -}}
{{- if .Values.services.payment.enabled -}}
{{- $provider := .Values.config.PAYMENT_PROVIDER | default "" -}}
{{- if not (has $provider (list "stripe" "mock")) -}}
{{- fail "config.PAYMENT_PROVIDER is required: stripe (real payments: set secrets.STRIPE_API_KEY and secrets.STRIPE_WEBHOOK_SECRET) or mock (no money moves: only with config.BOOKSTORE_ENVIRONMENT other than production)" -}}
{{- end -}}
{{- if and (eq $provider "mock") (eq (.Values.config.BOOKSTORE_ENVIRONMENT | default "" | lower) "production") -}}
{{- fail "config.PAYMENT_PROVIDER=mock takes no real payments and is refused with config.BOOKSTORE_ENVIRONMENT=production: choose stripe, or set BOOKSTORE_ENVIRONMENT to e.g. staging" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The release's ServiceAccount, for the long-running pods. Not for the migration hook:
it runs before ordinary resources (the account) exist, and needs no AWS access. */}}
{{- define "bookstore.serviceAccount" -}}
serviceAccountName: {{ include "bookstore.serviceAccountName" . }}
{{- end -}}

{{- define "bookstore.podSpecCommon" -}}
# Nothing in the pods calls the Kubernetes API (IRSA's web identity token is projected
# by EKS's webhook independently of this).
automountServiceAccountToken: false
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

{{/* One NetworkPolicy egress rule from {ports: [...], to: [...]}; no `to`: any address. */}}
{{- define "bookstore.egressRule" -}}
- ports:
    {{- toYaml .ports | nindent 4 }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
