# syntax=docker/dockerfile:1
# The OpenSearch engine image with the repository-s3 plugin, which the official image lacks:
# Kubernetes backups of OpenSearch clusters need it (Elasticsearch bundles it). Build, push, then
# point the manager at it and say it has the plugin:
#   docker build -f deploy/docker/opensearch-s3.Dockerfile -t <registry>/es-serverless/opensearch-s3:2.19.1 .
#   ESS_OPENSEARCH_REPOSITORY=es-serverless/opensearch-s3 ESS_OPENSEARCH_IMAGE_TAG=2.19.1
#   (ESS_IMAGE_REGISTRY=<registry>) ESS_OPENSEARCH_S3_PLUGIN=true
# The tag must stay the engine version the manager runs (ESS_OPENSEARCH_IMAGE_TAG's default).
# REGISTRY points it at a mirror for air-gapped builds (the plugin then needs a mirror too).
ARG REGISTRY=docker.io
ARG OPENSEARCH_IMAGE=opensearchproject/opensearch:2.19.1

FROM ${REGISTRY}/${OPENSEARCH_IMAGE}
# --batch: accept the plugin's permissions without a prompt; as the image's own user
RUN bin/opensearch-plugin install --batch repository-s3
