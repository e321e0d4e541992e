{{/* Name of the chart, or nameOverride. */}}
{{- define "fdfs-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: fullnameOverride, or release name + chart name. */}}
{{- define "fdfs-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the operator Pods. */}}
{{- define "fdfs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fdfs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "fdfs-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fdfs-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fdfs
{{- end }}

{{- define "fdfs-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fdfs-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fdfs-operator.leaseName" -}}
{{- default (include "fdfs-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The operator image: repository is required, the tag defaults to appVersion. */}}
{{- define "fdfs-operator.image" -}}
{{- $repo := required "image.repository is required: the chart never guesses a registry (e.g. --set image.repository=registry.example.com/fdfs-operator)" .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repo $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* The default node image, or nothing when nodeImage.repository is empty. */}}
{{- define "fdfs-operator.nodeImage" -}}
{{- if .Values.nodeImage.repository }}
{{- printf "%s:%s" .Values.nodeImage.repository (default .Chart.AppVersion .Values.nodeImage.tag) }}
{{- end }}
{{- end }}

{{/*
Combinations the schema cannot explain well: refused here with a message naming the values.
*/}}
{{- define "fdfs-operator.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: without leader election only one replica may run (set replicaCount=1, or leaderElection.enabled=true)" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope is namespaced but watchNamespaces is empty: list the namespaces to watch, or use rbac.scope=cluster" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" }}
{{- end }}
{{- end }}

{{/*
What the operator does, and nothing more (operator/src/controller):
- reads and watches FdfsClusters and StorageGroups, patches their status subresource;
- applies (server-side apply) tracker Deployments, group StatefulSets, Services, ConfigMaps
  and PodDisruptionBudgets, watches them as their owner, deletes PodDisruptionBudgets it no
  longer wants;
- lists a group's Pods;
- publishes events.k8s.io Events.
Owner references block owner deletion, which clusters with the
OwnerReferencesPermissionEnforcement admission plugin allow only with update on the owners'
finalizers subresource.
*/}}
{{- define "fdfs-operator.rules" -}}
- apiGroups: [fdfs.dev]
  resources: [fdfsclusters]
  verbs: [get, list, watch]
# patch: the StorageGroup finalizer that holds an unconfirmed deletion.
- apiGroups: [fdfs.dev]
  resources: [storagegroups]
  verbs: [get, list, watch, patch]
- apiGroups: [fdfs.dev]
  resources: [fdfsclusters/status, storagegroups/status]
  verbs: [get, patch]
- apiGroups: [fdfs.dev]
  resources: [fdfsclusters/finalizers, storagegroups/finalizers]
  verbs: [update]
# Trackers ran on a Deployment in earlier versions: it is removed once their StatefulSet runs.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, delete]
# delete: a StatefulSet is replaced (orphaning its Pods) to take a larger volume size.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, delete]
# Growing a group's volumes patches its claims; replacing a member deletes its claim.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# delete: the outside Service of a storage scaled away, or of a group no longer exposed.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# delete: replacing a member restarts its Pod on a new volume.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, delete]
# get: the HTTP token Secret an FdfsCluster names, hashed into the storages' Pod template
# so that a rotated secret rolls them. Read by name at each reconcile; never listed.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
