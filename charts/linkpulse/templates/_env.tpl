{{/*
The environment of each Linkpulse container. `linkpulse.envSpec` says, as data, which variables a
container's settings class reads and where each value comes from; `linkpulse.env` is the one loop
that turns it into a plan {plain: {VAR: value}, refs: {VAR: {name, key}}, expand: {VAR: "..$(REF).."}}, which the ConfigMaps,
Deployments, hook Jobs and Secrets render.
*/}}

{{/* A number as a settings parser reads it: integral values without exponent or fraction (1e+06 → 1000000). */}}
{{- define "linkpulse.num" -}}
{{- if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (float64 (int64 .)) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* CLICKS stream replicas: the value, else 3 with a bundled NATS of 3+ nodes, else 1. */}}
{{- define "linkpulse.clicksReplicas" -}}
{{- if not (kindIs "invalid" .Values.config.clicks.replicas) -}}
{{- .Values.config.clicks.replicas | int -}}
{{- else if and .Values.nats.enabled (ge (int .Values.nats.replicas) 3) -}}
3
{{- else -}}
1
{{- end -}}
{{- end -}}

{{/* Hosts whose short links are admin's own (loops): the enabled ingress hosts and HTTPRoute hostnames (not wildcards), then admin.ownHosts, comma separated. */}}
{{- define "linkpulse.adminOwnHosts" -}}
{{- $hosts := list -}}
{{- range $c := list "redirect" "admin" -}}
{{- $i := index $.Values.ingress $c -}}
{{- if and $.Values.ingress.enabled $i.enabled $i.host -}}{{- $hosts = append $hosts $i.host -}}{{- end -}}
{{- $r := index $.Values.httpRoute $c -}}
{{- if and $.Values.httpRoute.enabled $r.enabled -}}
{{- range $r.hostnames -}}{{- if not (hasPrefix "*" .) -}}{{- $hosts = append $hosts . -}}{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- join "," (concat $hosts .Values.admin.ownHosts | uniq) -}}
{{- end -}}

{{/*
What each container reads. `groups` mirror the settings groups (libs/src/linkpulse/settings.py and each
service's settings.py): variable → where its value comes from,
  config.nats.connectTimeout      a path in .Values,
  .database.poolMin               a path in the container's own values (.Values.redirect for redirect),
  include linkpulse.spillDir      a named template, given the root context.
A null, an empty list or an empty template result leaves the variable out, so the service keeps its own
default; a list is joined with commas. `containers`: the connection variables each one takes from
linkpulse.secretRefs, its groups, and whether it is a traced service (linkpulse.env.tracing).
*/}}
{{- define "linkpulse.envSpec" -}}
groups:
  http:
    LINKPULSE_HTTP_HOST: bindAddress
    LINKPULSE_HTTP_PORT: .port
    LINKPULSE_HTTP_WORKERS: .workers
    LINKPULSE_HTTP_LOG_LEVEL: .logLevel
  nats:
    LINKPULSE_NATS_CONNECT_TIMEOUT: config.nats.connectTimeout
    LINKPULSE_NATS_MAX_RECONNECT_ATTEMPTS: config.nats.maxReconnectAttempts
    LINKPULSE_NATS_RECONNECT_WAIT: config.nats.reconnectWait
  redis:
    LINKPULSE_REDIS_TIMEOUT: config.redis.timeout
    LINKPULSE_REDIS_TTL: config.redis.ttl
  database:
    LINKPULSE_DATABASE_COMMAND_TIMEOUT: config.database.commandTimeout
  pool:
    LINKPULSE_DATABASE_POOL_MIN: .database.poolMin
    LINKPULSE_DATABASE_POOL_MAX: .database.poolMax
  clicks:
    LINKPULSE_CLICKS_SHARDS: config.clicks.shards
    LINKPULSE_CLICKS_REPLICAS: include linkpulse.clicksReplicas
    LINKPULSE_CLICKS_MAX_AGE: config.clicks.maxAge
    LINKPULSE_CLICKS_MAX_BYTES: config.clicks.maxBytes
    LINKPULSE_CLICKS_DUPLICATE_WINDOW: config.clicks.duplicateWindow
    LINKPULSE_CLICKS_ACK_WAIT: config.clicks.ackWait
  proxy:
    LINKPULSE_PROXY_TRUSTED: .proxy.trusted
  bots:
    LINKPULSE_BOTS_PATTERNS: include linkpulse.botPatterns
  cache:
    LINKPULSE_CACHE_MAX_ENTRIES: redirect.cache.maxEntries
    LINKPULSE_CACHE_TTL: redirect.cache.ttl
    LINKPULSE_CACHE_NEGATIVE_TTL: redirect.cache.negativeTtl
    LINKPULSE_CACHE_NEGATIVE_MAX_ENTRIES: redirect.cache.negativeMaxEntries
    LINKPULSE_CACHE_CLICK_COUNT_REFRESH: redirect.cache.clickCountRefresh
  publisher:
    LINKPULSE_PUBLISHER_QUEUE_MAX: redirect.publisher.queueMax
    LINKPULSE_PUBLISHER_BATCH_MAX: redirect.publisher.batchMax
    LINKPULSE_PUBLISHER_LINGER: redirect.publisher.linger
    LINKPULSE_PUBLISHER_PUBLISH_TIMEOUT: redirect.publisher.publishTimeout
    LINKPULSE_PUBLISHER_GIVE_UP_AFTER: redirect.publisher.giveUpAfter
    LINKPULSE_PUBLISHER_DRAIN_TIMEOUT: redirect.publisher.drainTimeout
    LINKPULSE_PUBLISHER_REPLAY_CONCURRENCY: redirect.publisher.replayConcurrency
    LINKPULSE_PUBLISHER_SPILL_DIR: include linkpulse.spillDir
  redirectProxy:
    LINKPULSE_PROXY_COUNTRY_HEADER: redirect.proxy.countryHeader
    LINKPULSE_PROXY_ANONYMIZE_IP: redirect.proxy.anonymizeIp
  ingest:
    LINKPULSE_INGEST_METRICS_PORT: ingest.metricsPort
    LINKPULSE_INGEST_METRICS_HOST: bindAddress
    LINKPULSE_INGEST_LOG_LEVEL: ingest.logLevel
    LINKPULSE_INGEST_BATCH_SIZE: ingest.batchSize
    LINKPULSE_INGEST_MAX_WAIT: ingest.maxWait
    LINKPULSE_INGEST_LINGER: ingest.linger
    LINKPULSE_INGEST_BATCH_BYTES: ingest.batchBytes
    LINKPULSE_INGEST_CONCURRENT_STORES: ingest.concurrentStores
    LINKPULSE_INGEST_RETRY_DELAY: ingest.retryDelay
    LINKPULSE_INGEST_RETENTION_DAYS: ingest.retentionDays
  geoip:
    LINKPULSE_GEOIP_DATABASE: include linkpulse.geoipDatabase
    LINKPULSE_GEOIP_ASN_DATABASE: include linkpulse.geoipAsnDatabase
    LINKPULSE_GEOIP_CHECK_INTERVAL: ingest.geoip.checkInterval
  admin:
    LINKPULSE_ADMIN_PUBLIC_URL: include linkpulse.publicUrl
    LINKPULSE_ADMIN_OWN_HOSTS: include linkpulse.adminOwnHosts
    LINKPULSE_ADMIN_MAX_BODY_BYTES: admin.maxBodyBytes
    LINKPULSE_ADMIN_RELAY_INTERVAL: admin.relayInterval
    LINKPULSE_ADMIN_ALLOW_PRIVATE_TARGETS: admin.allowPrivateTargets
    LINKPULSE_ADMIN_AUTH_FAILURES: admin.authFailures
    LINKPULSE_ADMIN_AUTH_FAILURE_WINDOW: admin.authFailureWindow
containers:
  redirect:
    connections: [LINKPULSE_NATS_URL, LINKPULSE_REDIS_URL, LINKPULSE_DATABASE_URL]
    groups: [http, nats, redis, database, pool, clicks, cache, publisher, proxy, redirectProxy, bots]
    traced: true
  ingest:
    connections: [LINKPULSE_NATS_URL, LINKPULSE_DATABASE_URL]
    groups: [nats, database, clicks, ingest, geoip, bots]
    traced: true
  admin:
    connections: [LINKPULSE_NATS_URL, LINKPULSE_REDIS_URL, LINKPULSE_DATABASE_URL, LINKPULSE_ADMIN_KEY]
    groups: [http, nats, redis, database, pool, admin, proxy]
    traced: true
  migrate:
    connections: [LINKPULSE_DATABASE_URL, LINKPULSE_ROLES_REDIRECT_PASSWORD, LINKPULSE_ROLES_INGEST_PASSWORD, LINKPULSE_ROLES_ADMIN_PASSWORD]
    groups: []
  streams:
    connections: [LINKPULSE_NATS_URL]
    groups: [clicks]
  setup:
    connections: [LINKPULSE_NATS_URL, LINKPULSE_DATABASE_URL, LINKPULSE_ROLES_REDIRECT_PASSWORD, LINKPULSE_ROLES_INGEST_PASSWORD, LINKPULSE_ROLES_ADMIN_PASSWORD]
    groups: [clicks]
{{- end -}}

{{/*
Variables of one container, as YAML {plain: {VAR: value}, refs: {VAR: {name, key}}}: exactly the ones
its settings class reads (linkpulse.envSpec). (dict "ctx" $ "component" "redirect|ingest|admin|migrate|streams|setup" "hook" bool)
*/}}
{{- define "linkpulse.env" -}}
{{- $ctx := .ctx -}}
{{- $c := .component -}}
{{- $spec := include "linkpulse.envSpec" $ctx | fromYaml -}}
{{- $container := index $spec.containers $c -}}
{{- $src := include "linkpulse.secretRefs" (dict "ctx" $ctx "hook" (default false .hook) "component" $c) | fromYaml -}}
{{- $plain := dict -}}
{{- $refs := dict -}}
{{- $expand := dict -}}
{{- range $name := $container.connections -}}
{{- if hasKey $src.plain $name -}}{{- $_ := set $plain $name (index $src.plain $name) -}}{{- end -}}
{{- if hasKey $src.refs $name -}}{{- $_ := set $refs $name (index $src.refs $name) -}}{{- end -}}
{{- if hasKey $src.expand $name -}}{{- $_ := set $expand $name (index $src.expand $name) -}}{{- end -}}
{{- end -}}
{{- /* Passwords only the user's Secrets hold (existingSecret): PGPASSWORD, or what an expanded URL names. */ -}}
{{- range $name, $ref := $src.inputs -}}{{- $_ := set $refs $name $ref -}}{{- end -}}
{{- range $group := $container.groups -}}
{{- range $name, $from := index $spec.groups $group -}}
{{- if hasPrefix "include " $from -}}
{{- with include (trimPrefix "include " $from) $ctx -}}{{- $_ := set $plain $name . -}}{{- end -}}
{{- else -}}
{{- $node := ternary (index $ctx.Values $c) $ctx.Values (hasPrefix "." $from) -}}
{{- range $key := splitList "." (trimPrefix "." $from) -}}
{{- $node = index (ternary $node (dict) (kindIs "map" $node)) $key -}}
{{- end -}}
{{- if kindIs "slice" $node -}}
{{- with $node -}}{{- $_ := set $plain $name (join "," .) -}}{{- end -}}
{{- else if not (kindIs "invalid" $node) -}}
{{- $_ := set $plain $name (include "linkpulse.num" $node) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $container.traced -}}
{{- include "linkpulse.env.tracing" (dict "ctx" $ctx "env" $plain "refs" $refs "component" $c) -}}
{{- end -}}
{{- toYaml (dict "plain" $plain "refs" $refs "expand" $expand) -}}
{{- end -}}

{{/*
OpenTelemetry variables of a service container (docs/tracing.md): its service name always, the exporter
endpoint and sampling only when tracing.otlpEndpoint is set. (dict "ctx" $ "env" $plain "refs" $refs "component" c)
*/}}
{{- define "linkpulse.env.tracing" -}}
{{- $t := .ctx.Values.tracing -}}
{{- $_ := set .env "OTEL_SERVICE_NAME" (printf "linkpulse-%s" .component) -}}
{{- if $t.otlpEndpoint -}}
{{- $_ := set .env "OTEL_EXPORTER_OTLP_ENDPOINT" (toString $t.otlpEndpoint) -}}
{{- $_ := set .env "OTEL_EXPORTER_OTLP_PROTOCOL" "http/protobuf" -}}
{{- with $t.sampler -}}{{- $_ := set $.env "OTEL_TRACES_SAMPLER" (toString .) -}}{{- end -}}
{{- $ratio := index $t.sampleRatio .component -}}
{{- if not (kindIs "invalid" $ratio) -}}{{- $_ := set .env "OTEL_TRACES_SAMPLER_ARG" (include "linkpulse.num" $ratio) -}}{{- end -}}
{{- with $t.resourceAttributes -}}{{- $_ := set $.env "OTEL_RESOURCE_ATTRIBUTES" (toString .) -}}{{- end -}}
{{- if $t.headersSecret.name -}}
{{- $_ := set .refs "OTEL_EXPORTER_OTLP_HEADERS" (dict "name" $t.headersSecret.name "key" $t.headersSecret.key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* env: entries (YAML list) of an env plan: secret references, plus the plain values when inline. (dict "plan" $plan "inline" bool "extra" list) */}}
{{- define "linkpulse.envList" -}}
{{- $out := list -}}
{{- if .inline -}}
{{- range $name, $value := .plan.plain -}}
{{- $out = append $out (dict "name" $name "value" (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- range $name, $ref := .plan.refs -}}
{{- $out = append $out (dict "name" $name "valueFrom" (dict "secretKeyRef" (dict "name" $ref.name "key" $ref.key))) -}}
{{- end -}}
{{- /* After the Secret refs: Kubernetes expands $(VAR) only from variables defined earlier. */ -}}
{{- range $name, $value := .plan.expand -}}
{{- $out = append $out (dict "name" $name "value" $value) -}}
{{- end -}}
{{- $out = concat $out (.extra | default list) -}}
{{- if $out -}}{{- toYaml $out -}}{{- end -}}
{{- end -}}

