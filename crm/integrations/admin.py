"""Admin pages of this area (imported by crm.admin)."""
