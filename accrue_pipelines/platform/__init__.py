"""What every domain runs on: resources, partitions, run tags, pools, launching, deployment."""
