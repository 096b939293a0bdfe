include cross/static.mk
