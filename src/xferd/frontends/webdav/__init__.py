"""The WebDAV frontend: wsgidav on cheroot, in worker threads, over the VirtualFS."""
