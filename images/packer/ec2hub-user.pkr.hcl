# The user instances' AMI: Ubuntu 24.04 with the user environment (images/user/requirements.txt),
# s3fs-fuse and the bootstrap, and cloud-init set to run user-data at every boot.
#   packer init images/packer
#   packer build -only='amazon-ebs.cpu' images/packer      # t3/m6i sizes
#   packer build -only='amazon-ebs.gpu' images/packer      # g4dn/g5 sizes: NVIDIA driver, TensorFlow with CUDA

packer {
  required_version = ">= 1.9.0"

  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region to build the AMI in (the hub's region)."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet of the build instance; empty uses the default VPC. It needs the internet (pip, apt), e.g. a public subnet of the Terraform network."
}

variable "instance_type" {
  type        = string
  default     = "t3.large"
  description = "Instance type that builds the CPU image."
}

variable "gpu_instance_type" {
  type        = string
  default     = "g4dn.xlarge"
  description = "Instance type that builds the GPU image (it loads the NVIDIA driver once to check it)."
}

variable "volume_size" {
  type        = number
  default     = 40
  description = "Root volume of the image in GiB (the user's home lives on it): TensorFlow and CUDA take about 12 GiB."
}

variable "ami_name_prefix" {
  type        = string
  default     = "ec2hub-user"
  description = "AMI names are <prefix>-<variant>-<UTC time>."
}

variable "nvidia_driver_branch" {
  type        = string
  default     = "550"
  description = "Branch of Ubuntu's headless NVIDIA server driver for the GPU image (nvidia-headless-<branch>-server)."
}

locals {
  built = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "user" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ubuntu"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"] # Canonical
    most_recent = true
  }

  ami_name        = "${var.ami_name_prefix}-cpu-${local.built}"
  ami_description = "ec2hub user environment: JupyterLab, TensorFlow, Dask, pandas, pyarrow, s3fs"
  encrypt_boot    = true
  imds_support    = "v2.0"

  # The build instance, like every user instance, answers IMDSv2 only.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name            = "${var.ami_name_prefix}-cpu"
    "ec2hub:image"  = "user"
    "ec2hub:source" = "{{ .SourceAMIName }}"
  }
}

build {
  name = "ec2hub-user"

  source "source.amazon-ebs.user" {
    name = "cpu"
  }

  source "source.amazon-ebs.user" {
    name          = "gpu"
    instance_type = var.gpu_instance_type
    ami_name      = "${var.ami_name_prefix}-gpu-${local.built}"
    tags = {
      Name            = "${var.ami_name_prefix}-gpu"
      "ec2hub:image"  = "user"
      "ec2hub:source" = "{{ .SourceAMIName }}"
    }
  }

  provisioner "shell" {
    inline = ["mkdir -p /tmp/ec2hub/labextension"]
  }

  provisioner "file" {
    sources = [
      "${path.root}/../user/requirements.txt",
      "${path.root}/../user/slow-imports.txt",
      "${path.root}/../user/overrides.json",
      "${path.root}/../bootstrap",
      "${path.root}/files",
    ]
    destination = "/tmp/ec2hub/"
  }

  # The status bar's JupyterLab extension: its sources only (a local build's node_modules stay here).
  provisioner "file" {
    sources = [
      "${path.root}/../labextension/package.json",
      "${path.root}/../labextension/package-lock.json",
      "${path.root}/../labextension/src",
      "${path.root}/../labextension/style",
    ]
    destination = "/tmp/ec2hub/labextension/"
  }

  provisioner "shell" {
    only             = ["amazon-ebs.gpu"]
    script           = "${path.root}/scripts/install-nvidia-driver.sh"
    environment_vars = ["NVIDIA_DRIVER_BRANCH=${var.nvidia_driver_branch}"]
    execute_command  = "sudo -E bash '{{ .Path }}'"
    # The driver's kernel module loads after a reboot; the next provisioner waits for the instance.
    expect_disconnect = true
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/install-user-environment.sh"
    environment_vars = ["EC2HUB_GPU=${source.name == "gpu" ? "1" : "0"}"]
    execute_command  = "sudo -E bash '{{ .Path }}'"
    pause_before     = "10s"
  }
}
