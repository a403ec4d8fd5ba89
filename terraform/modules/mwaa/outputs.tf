output "environment_name" {
  description = "Name of the MWAA environment (`<name>-airflow`), also when create_environment is false (what it will be)."
  value       = local.environment_name
}

output "environment_arn" {
  description = "ARN of the MWAA environment; null without create_environment."
  value       = one(aws_mwaa_environment.this[*].arn)
}

output "webserver_url" {
  description = "Host of the Airflow UI (private: from the VPC or webserver_allowed_cidrs, after an AWS sign-in); null without create_environment."
  value       = one(aws_mwaa_environment.this[*].webserver_url)
}

output "bucket" {
  description = "Name of the DAGs bucket: put DAGs under dags/ (`aws s3 sync pipelines/dags s3://<bucket>/dags/`)."
  value       = aws_s3_bucket.dags.id
}

output "bucket_arn" {
  description = "ARN of the DAGs bucket."
  value       = aws_s3_bucket.dags.arn
}

output "dag_s3_path" {
  description = "Folder of the DAGs in the bucket (the environment's dag_s3_path)."
  value       = local.dag_s3_path
}

output "requirements_s3_path" {
  description = "Key of requirements.txt in the bucket (Terraform writes it from `requirements`)."
  value       = aws_s3_object.requirements.key
}

output "plugins_s3_path" {
  description = "Key of plugins.zip in the bucket; null without plugins_zip."
  value       = one(aws_s3_object.plugins[*].key)
}

output "execution_role_arn" {
  description = "ARN of the environment's execution role."
  value       = aws_iam_role.execution.arn
}

output "security_group_id" {
  description = "Security group of the environment (its workers, web server endpoint and database endpoint)."
  value       = aws_security_group.mwaa.id
}

output "connections_secret_prefix" {
  description = "Secrets Manager prefix Airflow reads connections from: store the ec2hub connection as `<prefix>/ec2hub_default`."
  value       = var.connections_secret_prefix
}
