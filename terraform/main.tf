# A minimal Terraform skeleton that deploys the same Deployment and Service as
# deploy/k8s/voicestream.yaml through the kubernetes provider. The Secret it reads
# (database-url, redis-url) is created outside Terraform; see deploy/k8s/README.md.

terraform {
  required_version = ">= 1.5"
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
  }
}

variable "image" {
  description = "voicestream image built from Dockerfile.gpu"
  type        = string
}

variable "replicas" {
  description = "Number of voicestream pods"
  type        = number
  default     = 2
}

variable "namespace" {
  description = "Kubernetes namespace to deploy into"
  type        = string
  default     = "default"
}

variable "kubeconfig_path" {
  description = "Path of the kubeconfig used by the provider"
  type        = string
  default     = "~/.kube/config"
}

variable "secret_name" {
  description = "Secret holding the keys database-url and redis-url"
  type        = string
  default     = "voicestream"
}

provider "kubernetes" {
  config_path = var.kubeconfig_path
}

locals {
  labels = { "app.kubernetes.io/name" = "voicestream" }
}

resource "kubernetes_deployment_v1" "voicestream" {
  metadata {
    name      = "voicestream"
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    replicas = var.replicas

    selector {
      match_labels = local.labels
    }

    template {
      metadata {
        labels = local.labels
      }

      spec {
        termination_grace_period_seconds = 30

        container {
          name  = "voicestream"
          image = var.image

          port {
            name           = "http"
            container_port = 8080
          }

          env {
            name = "DATABASE_URL"
            value_from {
              secret_key_ref {
                name = var.secret_name
                key  = "database-url"
              }
            }
          }

          env {
            name = "REDIS_URL"
            value_from {
              secret_key_ref {
                name = var.secret_name
                key  = "redis-url"
              }
            }
          }

          env {
            name  = "VOICESTREAM_HOST"
            value = "0.0.0.0"
          }

          readiness_probe {
            http_get {
              path = "/readyz"
              port = "http"
            }
            period_seconds = 5
          }

          liveness_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            initial_delay_seconds = 30
            period_seconds        = 10
          }

          resources {
            requests = {
              cpu    = "2"
              memory = "2Gi"
            }
            limits = {
              memory = "4Gi"
            }
          }
        }
      }
    }
  }
}

resource "kubernetes_service_v1" "voicestream" {
  metadata {
    name      = "voicestream"
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    selector = local.labels

    port {
      name        = "http"
      port        = 80
      target_port = "http"
    }
  }
}

output "service_name" {
  value = kubernetes_service_v1.voicestream.metadata[0].name
}
