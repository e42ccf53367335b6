{{/* ---------------------------------------------------------------- names and labels */}}

{{/* Chart name, or nameOverride. */}}
{{- define "linkpulse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: fullnameOverride, else the release name (plus the chart name unless the release name has it). */}}
{{- define "linkpulse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>. Call with (dict "ctx" $ "component" "redirect"). */}}
{{- define "linkpulse.componentName" -}}
{{- printf "%s-%s" (include "linkpulse.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "linkpulse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component (never change these: Deployment selectors are immutable). */}}
{{- define "linkpulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "linkpulse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object of a component. */}}
{{- define "linkpulse.labels" -}}
helm.sh/chart: {{ include "linkpulse.chart" .ctx }}
{{ include "linkpulse.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: linkpulse
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "linkpulse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "linkpulse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- images */}}

{{/*
An image reference, Bitnami style: global.imageRegistry, else the image's own registry, in front of the
repository; @digest when one is given (it wins over the tag), else :tag.
(dict "ctx" $ "registry" r "repository" repo "tag" t "digest" d)
*/}}
{{- define "linkpulse.imageRef" -}}
{{- $registry := (.ctx.Values.global | default dict).imageRegistry | default .registry -}}
{{- $repo := .repository -}}
{{- with $registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo -}}{{- end -}}
{{- if .digest -}}
{{- printf "%s@%s" $repo .digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString .tag) -}}
{{- end -}}
{{- end -}}

{{/* Image of a Linkpulse service. Call with (dict "ctx" $ "svc" .Values.redirect). */}}
{{- define "linkpulse.image" -}}
{{- $tag := .svc.image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- include "linkpulse.imageRef" (dict "ctx" .ctx "registry" .ctx.Values.image.registry "repository" .svc.image.repository "tag" $tag "digest" .svc.image.digest) -}}
{{- end -}}

{{/* Image of a bundled dependency: (dict "ctx" $ "image" .Values.nats.image). */}}
{{- define "linkpulse.depImage" -}}
{{- include "linkpulse.imageRef" (dict "ctx" .ctx "registry" .image.registry "repository" .image.repository "tag" .image.tag "digest" .image.digest) -}}
{{- end -}}

{{/* imagePullSecrets of every pod: global.imagePullSecrets (names or {name}) then imagePullSecrets, once each. */}}
{{- define "linkpulse.imagePullSecrets" -}}
{{- $names := list -}}
{{- range concat ((.Values.global | default dict).imagePullSecrets | default list) .Values.imagePullSecrets -}}
{{- $names = append $names (ternary . (get (ternary . dict (kindIs "map" .)) "name") (kindIs "string" .)) -}}
{{- end -}}
{{- $secrets := list -}}
{{- range $names | compact | uniq -}}{{- $secrets = append $secrets (dict "name" .) -}}{{- end -}}
{{- with $secrets -}}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
The annotations block of an object's metadata: commonAnnotations, then the object's own (which win),
or nothing. (dict "ctx" $ "extra" map)
*/}}
{{- define "linkpulse.annotations" -}}
{{- $all := merge (deepCopy (.extra | default dict)) (deepCopy (.ctx.Values.commonAnnotations | default dict)) -}}
{{- with $all -}}
annotations:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- generated secrets */}}

{{/*
A secret value that survives upgrades: the given value, else the one already stored in the Secret
(lookup; empty offline and in `helm template`), else a new random one. Memoised per render, so every
template that needs it (hook Secret, main Secret, URLs) sees the same value.
(dict "ctx" $ "secret" "<name>" "key" "<key>" "value" <given> "length" 32 "prefix" "")
*/}}
{{- define "linkpulse.persistent" -}}
{{- $root := .ctx.Values -}}
{{- if not (hasKey $root "__linkpulseGenerated") -}}{{- $_ := set $root "__linkpulseGenerated" (dict) -}}{{- end -}}
{{- $memo := index $root "__linkpulseGenerated" -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $memo $id) -}}
{{- $value := .value -}}
{{- if not $value -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- $value = index $existing.data .key | b64dec -}}
{{- else -}}
{{- $value = printf "%s%s" (.prefix | default "") (randAlphaNum (int .length)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $memo $id $value -}}
{{- end -}}
{{- index $memo $id -}}
{{- end -}}

{{- define "linkpulse.adminKey" -}}
{{- include "linkpulse.persistent" (dict "ctx" . "secret" (include "linkpulse.fullname" .) "key" "admin-key" "value" .Values.admin.key "length" 43 "prefix" "lp_") -}}
{{- end -}}

{{- define "linkpulse.redisPassword" -}}
{{- include "linkpulse.persistent" (dict "ctx" . "secret" (include "linkpulse.componentName" (dict "ctx" . "component" "redis")) "key" "password" "value" .Values.redis.auth.password "length" 32) -}}
{{- end -}}

{{- define "linkpulse.databasePassword" -}}
{{- include "linkpulse.persistent" (dict "ctx" . "secret" (include "linkpulse.componentName" (dict "ctx" . "component" "timescaledb")) "key" "password" "value" .Values.timescaledb.auth.password "length" 32) -}}
{{- end -}}

{{/* ---------------------------------------------------------------- connection URLs */}}

{{- define "linkpulse.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s:4222" (include "linkpulse.componentName" (dict "ctx" . "component" "nats")) -}}
{{- else if .Values.externalNats.url -}}
{{- .Values.externalNats.url -}}
{{- else if not .Values.externalNats.existingSecret -}}
{{- fail "NATS: nats.enabled is false, so set externalNats.url (or externalNats.existingSecret) to your NATS server(s)" -}}
{{- end -}}
{{- end -}}

{{- define "linkpulse.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- $host := include "linkpulse.componentName" (dict "ctx" . "component" "redis") -}}
{{- if .Values.redis.auth.enabled -}}
{{- printf "redis://:%s@%s:6379/0" (include "linkpulse.redisPassword" . | urlquery) $host -}}
{{- else -}}
{{- printf "redis://%s:6379/0" $host -}}
{{- end -}}
{{- else if .Values.externalRedis.url -}}
{{- .Values.externalRedis.url -}}
{{- else if not .Values.externalRedis.existingSecret -}}
{{- fail "Redis: redis.enabled is false, so set externalRedis.url (or externalRedis.existingSecret) to your Redis" -}}
{{- end -}}
{{- end -}}

{{/*
The owner's DSN. With timescaledb.auth.existingSecret the chart never sees the password: the DSN has
none, and the containers using it get PGPASSWORD from that Secret (asyncpg reads it, as libpq does).
*/}}
{{- define "linkpulse.databaseUrl" -}}
{{- if .Values.timescaledb.enabled -}}
{{- $a := .Values.timescaledb.auth -}}
{{- $host := include "linkpulse.componentName" (dict "ctx" . "component" "timescaledb") -}}
{{- if $a.existingSecret -}}
{{- printf "postgresql://%s@%s:5432/%s" ($a.username | urlquery) $host $a.database -}}
{{- else -}}
{{- printf "postgresql://%s:%s@%s:5432/%s" ($a.username | urlquery) (include "linkpulse.databasePassword" . | urlquery) $host $a.database -}}
{{- end -}}
{{- else if .Values.externalDatabase.url -}}
{{- .Values.externalDatabase.url -}}
{{- else if not .Values.externalDatabase.existingSecret -}}
{{- fail "Database: timescaledb.enabled is false, so set externalDatabase.url (or externalDatabase.existingSecret) to your PostgreSQL DSN" -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- per-service users */}}

{{/* Login user of a container on the bundled NATS: the service's own, else "setup" (streams, migrate, setup). */}}
{{- define "linkpulse.natsUser" -}}
{{- ternary . "setup" (has . (list "redirect" "ingest" "admin")) -}}
{{- end -}}

{{/* Password of a bundled-NATS user. (dict "ctx" $ "user" "redirect|ingest|admin|setup") */}}
{{- define "linkpulse.natsPassword" -}}
{{- include "linkpulse.persistent" (dict "ctx" .ctx "secret" (include "linkpulse.componentName" (dict "ctx" .ctx "component" "nats")) "key" .user "value" (index .ctx.Values.nats.auth.passwords .user | default "") "length" 32) -}}
{{- end -}}

{{/* Password of a bundled-Redis service user. (dict "ctx" $ "user" "redirect|admin") */}}
{{- define "linkpulse.redisUserPassword" -}}
{{- include "linkpulse.persistent" (dict "ctx" .ctx "secret" (include "linkpulse.componentName" (dict "ctx" .ctx "component" "redis")) "key" (printf "%s-password" .user) "value" (index .ctx.Values.redis.auth.userPasswords .user | default "") "length" 32) -}}
{{- end -}}

{{/* "true" when services connect as their own Postgres login roles (databaseRoles.enabled, and a DSN to derive them from). */}}
{{- define "linkpulse.serviceRoles" -}}
{{- $v := .Values -}}
{{- if and $v.databaseRoles.enabled (or $v.timescaledb.enabled (not $v.externalDatabase.existingSecret)) -}}true{{- end -}}
{{- end -}}

{{/* Password of a service's Postgres login role (made by the setup step). (dict "ctx" $ "service" s) */}}
{{- define "linkpulse.rolePassword" -}}
{{- include "linkpulse.persistent" (dict "ctx" .ctx "secret" (include "linkpulse.fullname" .ctx) "key" (printf "database-password-%s" .service) "value" (index .ctx.Values.databaseRoles.passwords .service | default "") "length" 32) -}}
{{- end -}}

{{/*
The value of one key of the release (or hook) Secret: connection URLs, each with the user of the
container it is for, role passwords and the admin key. (dict "ctx" $ "key" k)
*/}}
{{- define "linkpulse.secretValue" -}}
{{- $ctx := .ctx -}}
{{- $key := .key -}}
{{- if eq $key "admin-key" -}}{{- include "linkpulse.adminKey" $ctx -}}
{{- else if eq $key "database-url" -}}{{- include "linkpulse.databaseUrl" $ctx -}}
{{- else if hasPrefix "database-url-" $key -}}
{{- $service := trimPrefix "database-url-" $key -}}
{{- $user := printf "linkpulse_%s_login:%s@" $service (include "linkpulse.rolePassword" (dict "ctx" $ctx "service" $service) | urlquery) -}}
{{- regexReplaceAll "^([A-Za-z][A-Za-z0-9+.-]*://)([^@/]*@)?" (include "linkpulse.databaseUrl" $ctx) (printf "${1}%s" $user) -}}
{{- else if hasPrefix "database-password-" $key -}}{{- include "linkpulse.rolePassword" (dict "ctx" $ctx "service" (trimPrefix "database-password-" $key)) -}}
{{- else if eq $key "nats-url" -}}{{- include "linkpulse.natsUrl" $ctx -}}
{{- else if hasPrefix "nats-url-" $key -}}
{{- $user := trimPrefix "nats-url-" $key -}}
{{- printf "nats://%s:%s@%s:4222" $user (include "linkpulse.natsPassword" (dict "ctx" $ctx "user" $user) | urlquery) (include "linkpulse.componentName" (dict "ctx" $ctx "component" "nats")) -}}
{{- else if eq $key "redis-url" -}}{{- include "linkpulse.redisUrl" $ctx -}}
{{- else if hasPrefix "redis-url-" $key -}}
{{- $user := trimPrefix "redis-url-" $key -}}
{{- printf "redis://%s:%s@%s:6379/0" $user (include "linkpulse.redisUserPassword" (dict "ctx" $ctx "user" $user) | urlquery) (include "linkpulse.componentName" (dict "ctx" $ctx "component" "redis")) -}}
{{- else -}}
{{- fail (printf "linkpulse.secretValue: unknown key %s" $key) -}}
{{- end -}}
{{- end -}}

{{/*
Where each secret-bearing variable of one container comes from, as YAML {VAR: {name, key}} for
secretKeyRef, plus "plain" for URLs that may sit in a ConfigMap. Services (redirect, ingest, admin)
log in to the bundled NATS and Redis and to Postgres as their own users; the setup containers as the
NATS setup user and the database owner, which creates the services' login roles.
(dict "ctx" $ "hook" bool "component" c): hook Jobs read the hook Secret <fullname>-setup, which
exists before the release's own objects.
*/}}
{{- define "linkpulse.secretRefs" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $c := .component | default "setup" -}}
{{- $service := has $c (list "redirect" "ingest" "admin") -}}
{{- $own := ternary (include "linkpulse.componentName" (dict "ctx" $ctx "component" "setup")) (include "linkpulse.fullname" $ctx) .hook -}}
{{- $refs := dict -}}
{{- $plain := dict -}}
{{- /* expand: values with $(VAR) references Kubernetes resolves from the inputs, Secret refs set before them. */ -}}
{{- $expand := dict -}}
{{- $inputs := dict -}}
{{- $roles := include "linkpulse.serviceRoles" $ctx -}}
{{- /* Database: always a Secret (the DSN holds a password). */ -}}
{{- if and (not $v.timescaledb.enabled) $v.externalDatabase.existingSecret -}}
{{- $_ := set $refs "LINKPULSE_DATABASE_URL" (dict "name" $v.externalDatabase.existingSecret "key" $v.externalDatabase.existingSecretKey) -}}
{{- else -}}
{{- $_ := include "linkpulse.databaseUrl" $ctx -}}
{{- $ownerDsn := not (and $service (eq $roles "true")) -}}
{{- $_ := set $refs "LINKPULSE_DATABASE_URL" (dict "name" $own "key" (ternary "database-url" (printf "database-url-%s" $c) $ownerDsn)) -}}
{{- $a := $v.timescaledb.auth -}}
{{- if and $v.timescaledb.enabled $a.existingSecret $ownerDsn -}}
{{- $_ := set $inputs "PGPASSWORD" (dict "name" $a.existingSecret "key" $a.existingSecretPasswordKey) -}}
{{- end -}}
{{- end -}}
{{- if and (not $service) (eq $roles "true") -}}
{{- range $s := list "redirect" "ingest" "admin" -}}
{{- $_ := set $refs (printf "LINKPULSE_ROLES_%s_PASSWORD" (upper $s)) (dict "name" $own "key" (printf "database-password-%s" $s)) -}}
{{- end -}}
{{- end -}}
{{- /* NATS: the bundled one has a user per service; an external one a Secret only for credentials. */ -}}
{{- if $v.nats.enabled -}}
{{- $_ := set $refs "LINKPULSE_NATS_URL" (dict "name" $own "key" (printf "nats-url-%s" (include "linkpulse.natsUser" $c))) -}}
{{- else if $v.externalNats.existingSecret -}}
{{- $_ := set $refs "LINKPULSE_NATS_URL" (dict "name" $v.externalNats.existingSecret "key" $v.externalNats.existingSecretKey) -}}
{{- else if contains "@" (include "linkpulse.natsUrl" $ctx) -}}
{{- $_ := set $refs "LINKPULSE_NATS_URL" (dict "name" $own "key" "nats-url") -}}
{{- else -}}
{{- $_ := set $plain "LINKPULSE_NATS_URL" (include "linkpulse.natsUrl" $ctx) -}}
{{- end -}}
{{- /* Redis: the bundled one has a user per service; an external one a Secret when it has a password. Setup never needs Redis. */ -}}
{{- if not .hook -}}
{{- if and $v.redis.enabled (has $c (list "redirect" "admin")) $v.redis.auth.existingSecret -}}
{{- /* The password is only in the user's Secret: Kubernetes puts it into the URL (it must be URL-safe). */ -}}
{{- $_ := set $inputs "REDIS_USER_PASSWORD" (dict "name" $v.redis.auth.existingSecret "key" (printf "%s-password" $c)) -}}
{{- $_ := set $expand "LINKPULSE_REDIS_URL" (printf "redis://%s:$(REDIS_USER_PASSWORD)@%s:6379/0" $c (include "linkpulse.componentName" (dict "ctx" $ctx "component" "redis"))) -}}
{{- else if and $v.redis.enabled (has $c (list "redirect" "admin")) -}}
{{- $_ := set $refs "LINKPULSE_REDIS_URL" (dict "name" $own "key" (printf "redis-url-%s" $c)) -}}
{{- else if $v.redis.enabled -}}
{{- /* no other container uses Redis */ -}}
{{- else if $v.externalRedis.existingSecret -}}
{{- $_ := set $refs "LINKPULSE_REDIS_URL" (dict "name" $v.externalRedis.existingSecret "key" $v.externalRedis.existingSecretKey) -}}
{{- else if contains "@" (include "linkpulse.redisUrl" $ctx) -}}
{{- $_ := set $refs "LINKPULSE_REDIS_URL" (dict "name" $own "key" "redis-url") -}}
{{- else -}}
{{- $_ := set $plain "LINKPULSE_REDIS_URL" (include "linkpulse.redisUrl" $ctx) -}}
{{- end -}}
{{- if $v.admin.existingSecret -}}
{{- $_ := set $refs "LINKPULSE_ADMIN_KEY" (dict "name" $v.admin.existingSecret "key" $v.admin.existingSecretKey) -}}
{{- else -}}
{{- $_ := set $refs "LINKPULSE_ADMIN_KEY" (dict "name" $own "key" "admin-key") -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "refs" $refs "plain" $plain "expand" $expand "inputs" $inputs) -}}
{{- end -}}

{{/* Data of the Secret `name` holding the keys the given containers refer to: (dict "ctx" $ "hook" bool "name" n "components" list) */}}
{{- define "linkpulse.secretData" -}}
{{- $data := dict -}}
{{- range $c := .components -}}
{{- $plan := include "linkpulse.env" (dict "ctx" $.ctx "component" $c "hook" $.hook) | fromYaml -}}
{{- range $var, $ref := $plan.refs -}}
{{- if eq $ref.name $.name -}}
{{- $_ := set $data $ref.key (include "linkpulse.secretValue" (dict "ctx" $.ctx "key" $ref.key)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* ---------------------------------------------------------------- paths and addresses */}}

{{/* Spill folder of the redirect publisher: an emptyDir mount. */}}
{{- define "linkpulse.spillDir" -}}/var/lib/linkpulse/spill{{- end -}}

{{/* Ingest's GeoIP volume source (ingest.geoip: one of existingClaim, configMap, secret), empty without one; the deployment renders it, so a second source fails there. */}}
{{- define "linkpulse.geoipVolume" -}}
{{- $g := .Values.ingest.geoip -}}
{{- if gt (len (compact (list $g.existingClaim $g.configMap $g.secret))) 1 -}}
{{- fail "ingest.geoip: give one of existingClaim, configMap and secret" -}}
{{- end -}}
{{- if $g.existingClaim -}}
persistentVolumeClaim:
  claimName: {{ $g.existingClaim }}
  readOnly: true
{{- else if $g.configMap -}}
configMap:
  name: {{ $g.configMap }}
{{- else if $g.secret -}}
secret:
  secretName: {{ $g.secret }}
{{- end -}}
{{- end -}}

{{/* LINKPULSE_BOTS_PATTERNS: config.bots.patterns, one per line (a regular expression may hold a comma). */}}
{{- define "linkpulse.botPatterns" -}}
{{- join "\n" .Values.config.bots.patterns -}}
{{- end -}}

{{/* Where that volume is mounted, read-only, as a directory: a subPath mount would never see a new version. */}}
{{- define "linkpulse.geoipDir" -}}/etc/linkpulse/geoip{{- end -}}

{{/* LINKPULSE_GEOIP_DATABASE and _ASN_DATABASE: the files in the mounted volume; empty (unset) without one. */}}
{{- define "linkpulse.geoipDatabase" -}}
{{- $g := .Values.ingest.geoip -}}
{{- if and (or $g.existingClaim $g.configMap $g.secret) $g.database -}}
{{- include "linkpulse.geoipDir" . }}/{{ .Values.ingest.geoip.database -}}
{{- end -}}
{{- end -}}
{{- define "linkpulse.geoipAsnDatabase" -}}
{{- $g := .Values.ingest.geoip -}}
{{- if and (or $g.existingClaim $g.configMap $g.secret) $g.asnDatabase -}}
{{- include "linkpulse.geoipDir" . }}/{{ .Values.ingest.geoip.asnDatabase -}}
{{- end -}}
{{- end -}}

{{/* Base URL of short links: admin.publicUrl, else the redirect ingress host, else the port-forward address. */}}
{{- define "linkpulse.publicUrl" -}}
{{- $i := .Values.ingress.redirect -}}
{{- if .Values.admin.publicUrl -}}
{{- .Values.admin.publicUrl -}}
{{- else if and .Values.ingress.enabled $i.enabled $i.host -}}
{{- printf "%s://%s" (ternary "https" "http" $i.tls.enabled) $i.host -}}
{{- else -}}
http://127.0.0.1:8000
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- pod pieces */}}

{{/* Topology spread: the given constraints (missing labelSelector filled in), else nodes and zones, best effort. (dict "ctx" $ "component" c "constraints" list "rolling" bool) */}}
{{- define "linkpulse.topologySpread" -}}
{{- $selector := include "linkpulse.selectorLabels" . | fromYaml -}}
{{- $out := list -}}
{{- if .constraints -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) -}}{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- else -}}
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" -}}
{{- $c := dict "maxSkew" 1 "topologyKey" $key "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" (dict "matchLabels" $selector) -}}
{{- if $.rolling -}}{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") -}}{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- end -}}
topologySpreadConstraints:
{{- toYaml $out | nindent 2 }}
{{- end -}}

{{/* Scheduling fields shared by every pod. (dict "ctx" $ "cfg" .Values.<x>) */}}
{{- define "linkpulse.scheduling" -}}
{{- $out := dict -}}
{{- with .cfg.nodeSelector -}}{{- $_ := set $out "nodeSelector" . -}}{{- end -}}
{{- with .cfg.tolerations -}}{{- $_ := set $out "tolerations" . -}}{{- end -}}
{{- with .cfg.affinity -}}{{- $_ := set $out "affinity" . -}}{{- end -}}
{{- with .cfg.priorityClassName -}}{{- $_ := set $out "priorityClassName" . -}}{{- end -}}
{{- if $out -}}{{- toYaml $out -}}{{- end -}}
{{- end -}}

{{/* HTTP probes of a service container: (dict "probes" .Values.x.probes "port" "http") */}}
{{- define "linkpulse.httpProbes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
{{- toYaml .probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
{{- toYaml .probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
{{- toYaml .probes.readiness | nindent 2 }}
{{- end -}}

{{/* Whether the admin pods carry the setup init container. */}}
{{- define "linkpulse.setupInit" -}}
{{- $mode := .Values.setup.initContainer -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") (or .Values.nats.enabled .Values.timescaledb.enabled)) -}}true{{- end -}}
{{- end -}}

{{/* Ports of the bundled services, and of external ones parsed from their URL (for NetworkPolicy egress). */}}
{{- define "linkpulse.urlPort" -}}
{{- $u := urlParse .url -}}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- default .default $port -}}
{{- end -}}

{{/*
Pod-template annotations: checksums of the container's variables (plain values and Secret references)
and of where its connections go, so a change rolls the pods. Passwords are left out on purpose: not
even a hash of one belongs in an annotation (after changing only a password, restart the pods).
*/}}
{{- define "linkpulse.podAnnotations" -}}
{{- $v := .ctx.Values -}}
{{- $where := list -}}
{{- range $external := list $v.externalNats $v.externalRedis $v.externalDatabase -}}
{{- $where = append $where (list (regexReplaceAll "//[^/@]*@" $external.url "//") $external.existingSecret $external.existingSecretKey) -}}
{{- end -}}
checksum/config: {{ toYaml .plan | sha256sum }}
{{- $connections := list $where $v.admin.existingSecret $v.admin.existingSecretKey -}}
{{- with compact (list $v.redis.auth.existingSecret $v.timescaledb.auth.existingSecret) -}}{{- $connections = append $connections . -}}{{- end }}
checksum/connections: {{ toJson $connections | sha256sum }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The /tmp emptyDir volume every Linkpulse container mounts (its root filesystem is read-only). */}}
{{- define "linkpulse.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/* The setup init container / Job container. (dict "ctx" $ "component" "setup|migrate|streams" "hook" bool "command" list) */}}
{{- define "linkpulse.setupContainer" -}}
{{- $ctx := .ctx -}}
{{- $plan := include "linkpulse.env" (dict "ctx" $ctx "component" .component "hook" .hook) | fromYaml -}}
- name: {{ .component }}
  image: {{ include "linkpulse.image" (dict "ctx" $ctx "svc" $ctx.Values.admin) }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command:
    {{- toYaml .command | nindent 4 }}
  {{- with $ctx.Values.setup.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "linkpulse.envList" (dict "plan" $plan "inline" true) }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml $ctx.Values.setup.resources | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- with $ctx.Values.setup.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
